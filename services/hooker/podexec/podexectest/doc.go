// Package podexectest stands in for exec into pods (the Exec method that
// the hooker's freeze and session packages consume) in tests of the hooker
// and of pipelines that run it:
//
//   - Recorder, for hooks whose output does not matter: it records each
//     command and when it ran, and fails or blocks those it is told to;
//   - DBClient, for a database client that holds a lock for a session
//     (KubeExecSession): it reads statements from stdin and answers the one
//     that takes the lock with a ready line, and can misbehave;
//   - Local, for a real client against a real server: it runs the command
//     as a local process, as the sandbox's kwok does with a pod exec.
package podexectest
