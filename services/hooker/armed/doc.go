// Package armed opens a post-hook's exec before the freeze, with the
// command waiting on its stdin, so that resuming is one write on an open
// stream instead of a new exec (connection, shell, client start), all of
// which would be frozen time.
//
// # The protocol
//
// The exec runs a small POSIX sh script (Command builds it):
//
//	sh -c '<script>' freezeframe-armed <fire-until-unix-milliseconds> <post-hook command...>
//
// It prints ReadyLine on stderr once it runs, then reads lines from stdin:
//
//   - "until <unix milliseconds>" moves the fire limit (sent after every write
//     of the freeze record, see Arm.Extend);
//   - "resume" runs the post-hook command in place of the script (exec, so
//     its output and exit status come back on the same stream, exactly as
//     an ordinary exec's would);
//   - "disarm" exits 0 without running anything.
//
// # The dead man's switch
//
// When stdin ends without either (the hooker died, or its stream broke),
// the script runs the command by itself if the clock in the pod is not past
// the fire limit: the application is unfrozen within moments of the
// hooker's death, even when no replica is alive to resume it. Past the
// limit it exits without running: by then the freeze record may have been
// taken over and ended, and the workload frozen again by a later backup,
// which a late fire would thaw. The caller sets the limit strictly before
// that can happen (the freeze record's ValidUntil less the clock
// tolerance).
//
// A fired post-hook runs with its output thrown away: nobody reads the
// broken stream, and a write into it must not kill the command midway.
//
// # Lost
//
// An exec that ends before Resume or Disarm (stream broken, pod restarted,
// the switch fired) is lost: Arm.Lost is closed, and Resume returns
// ErrLost without writing anything, so that the caller runs the post-hook
// as an ordinary exec (at least once) and fails the backup: the
// application may have been writable while the snapshot was cut.
package armed
