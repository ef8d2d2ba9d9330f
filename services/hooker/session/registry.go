package session

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// Registry holds the sessions this process has open, by backup id, so that
// the resume of a backup finds them. It is in memory on purpose: a session
// cannot outlive the process that holds its stream (see the package doc),
// so there is nothing to persist, and a replica without the backup's
// sessions knows it is not the one to release them.
//
// The zero value is ready to use.
type Registry struct {
	mu       sync.Mutex
	byBackup map[string][]*Session
}

// Add records a session held for a backup.
func (r *Registry) Add(backupID string, s *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byBackup == nil {
		r.byBackup = map[string][]*Session{}
	}
	r.byBackup[backupID] = append(r.byBackup[backupID], s)
}

// Has reports whether this process holds sessions for the backup: whether
// it is the replica that must run the backup's resume. A session that is
// being released still counts, until its release finished.
func (r *Registry) Has(backupID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byBackup[backupID]) > 0
}

// Sessions returns the backup's sessions, for watching Lost.
func (r *Registry) Sessions(backupID string) []*Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.byBackup[backupID])
}

// Backups returns the ids of the backups with sessions open.
func (r *Registry) Backups() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.byBackup))
	for id := range r.byBackup {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Release releases all of the backup's sessions, in parallel so that one
// slow client does not keep the others frozen, and forgets them. Errors are
// joined; a lost session's error wraps ErrLost. The sessions are forgotten
// whatever the outcome: a failed release has still ended its session.
//
// A backup with no sessions here returns nil: either it had none, or they
// were released already (a duplicated resume does no harm). A call while
// another is releasing the same backup waits for it and returns the same
// errors.
func (r *Registry) Release(ctx context.Context, backupID string) error {
	sessions := r.Sessions(backupID)
	errs := make([]error, len(sessions))
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() { errs[i] = s.Release(ctx) })
	}
	wg.Wait()

	r.mu.Lock()
	// Only those released here: a session added meanwhile stays.
	kept := slices.DeleteFunc(r.byBackup[backupID], func(s *Session) bool { return slices.Contains(sessions, s) })
	if len(kept) == 0 {
		delete(r.byBackup, backupID)
	} else {
		r.byBackup[backupID] = kept
	}
	r.mu.Unlock()
	return errors.Join(errs...)
}

// ReleaseAll releases every session, for a graceful shutdown: exiting would
// end them too, but releasing says whether each unlock succeeded.
func (r *Registry) ReleaseAll(ctx context.Context) error {
	ids := r.Backups()
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { errs[i] = r.Release(ctx, id) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
