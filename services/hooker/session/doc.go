// Package session holds a database lock that lasts only as long as the
// client session that took it, for the whole time between the hooker's
// pre-hook and post-hook.
//
// MariaDB and MySQL FLUSH TABLES WITH READ LOCK, and PostgreSQL
// pg_backup_start, belong to the client's session: a hook that runs
// `mariadb -e "FLUSH TABLES WITH READ LOCK"` and exits has locked nothing.
// [Start] runs the client through the pod exec API with stdin kept open,
// writes the statements that take the lock, and returns once the client's
// standard output matches the ready pattern (a line the client prints after
// the lock statement succeeded). The exec stream then stays open; [Session.Release]
// writes the release input (UNLOCK TABLES), closes stdin so that the client
// exits, and waits for it. A blueprint asks for this with the KubeExecSession
// function, decoded by blueprint.Phase.SessionSpec.
//
// # Crash safety
//
// Holding the lock in a live session is what makes a crash harmless. If the
// hooker process holding a session dies, even by kill -9, its connection to
// the API server closes, the API server closes the exec stream, and the
// client in the pod reads EOF on stdin and exits; the database server then
// ends the session and releases the lock by itself. No session-bound lock can
// outlive its holder, unlike MongoDB's fsyncLock or Redis' CLIENT PAUSE,
// which need an explicit undo. Two conditions make this true, and a
// blueprint must meet them:
//   - the command must be the client itself (or exec it), and exit on EOF
//     on stdin, as mariadb and psql do; a wrapper such as
//     `sh -c 'mariadb ...; sleep infinity'` would keep the session alive;
//   - the client must flush its output as it goes, or the ready pattern is
//     only seen when the client exits: run mariadb with --unbuffered.
//
// A crash closes the stream at once. A network partition between the hooker
// and the API server closes it only when that connection times out, so the
// freeze lease and its watchdog still bound the freeze; [Spec.MaxHold] also
// ends a session the holder forgot, from inside the holder.
//
// # Routing the resume
//
// Only the process that opened a session can release it: another hooker
// replica has no handle on the exec stream, and opening a new client session
// cannot undo another session's lock. So the resume of a backup must reach
// the replica whose [Registry] has that backup ([Registry.Has]). Any other
// replica can only wait for the session to be gone: if the holder is alive
// it will release it, and if the holder died the lock went with it.
//
// # Lost sessions
//
// A session can end on its own before Release: the client was killed, the
// database restarted, the pod was evicted, the stream broke. The lock is
// then gone and the application is no longer frozen. [Session.Lost] is
// closed when that happens, and [Session.Err] says why. The caller must check
// it after the snapshot is cut: a snapshot cut after the session was lost is
// not application-consistent. Lost is noticed when the exec stream reports
// the command's end, a little after the database dropped the lock.
package session
