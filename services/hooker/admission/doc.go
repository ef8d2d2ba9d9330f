// Package admission decides when a backup may start freezing its
// application: it bounds the freezes in flight on one storage to what the
// storage sustains, and keeps every other request unfrozen, waiting its
// turn, first come first served.
//
// # Why
//
// When many backups are due at once, freezing them all together makes
// every application wait frozen for the whole queue of snapshot cuts in
// front of its own. A freeze admitted just in time for its cut is frozen
// for about as long as it would be alone.
//
// # What is counted
//
// A Gate holds one adaptive limit per storage key (the hooker uses the
// snapshot class). A Slot is one freeze in flight on its storage: taken
// before the freeze lease is acquired, given back once its cut is reported
// or, for a freeze that ends without a cut, when it ends. Release is
// idempotent, so the holder's two release points cannot count one freeze
// twice.
//
// # How the limit adapts
//
// Each freeze reports the duration of its snapshot cut once (Slot.Observe).
// Limit compares it with the baseline, the shortest cut seen within the
// last BaselineWindow (never less than NoiseFloor, since a cut of a few
// milliseconds is measurement jitter): while cuts stay near the baseline
// the limit grows
// (by one per cut until the first congestion, then by one per limit's
// worth of cuts), in a dead band it holds, and past Tolerance times the
// baseline it shrinks multiplicatively, once per generation of freezes
// (cuts of freezes admitted before the last decrease do not shrink it
// again). It grows only on cuts of freezes admitted while the gate was at
// least half full, so a quiet day does not raise it for a burst. Failed
// freezes give no sample. Time is passed in, never read, so the dynamics
// are tested with plain values.
package admission
