// Package blueprint reads the Kanister-compatible Blueprints that tell the
// hooker how to quiesce and resume an application, and turns a phase into
// the exec it asks for. It does no I/O: fetching Secrets and exec'ing into
// pods belong to the caller.
//
// # Format
//
// A Blueprint resource (freezeframe.io/v1alpha1, or Kanister's
// cr.kanister.io/v1alpha1 as users already have them) holds named actions;
// the hooker runs K10's reserved ones, [ActionPrehook] (quiesce) and
// [ActionPosthook] (resume). Each action is a list of phases, plus an
// optional deferPhase that runs whatever happened. A phase calls a Kanister
// function — freezeframe runs [FuncKubeExec] and [FuncKubeExecAll], and its
// own [FuncKubeExecSession] (below) — with args whose strings are Go
// text/templates with sprig functions, and may name Secrets and ConfigMaps
// under "objects" for its templates to read.
//
// # Running an action
//
//	bp, err := blueprint.FromUnstructured(obj)         // or Parse(yamlBytes)
//	err = bp.Validate(blueprint.ActionPrehook, blueprint.ActionPosthook)
//	act, err := bp.Action(blueprint.ActionPrehook)
//	for _, ph := range act.Phases {
//		refs, err := ph.RenderObjects(params)           // fetch each ref, then:
//		params.Phases[ph.Name] = &blueprint.PhaseParams{Secrets: ..., ConfigMaps: ...}
//		args, err := ph.RenderArgs(params)
//		spec, err := ph.ExecSpec(args)                  // exec spec.Command
//		params.Phases[ph.Name].Output, err = blueprint.ParseOutput(stdout)
//	}
//
// Rendering fails on anything a template cannot resolve (missingkey=error,
// and index fails on a missing key too) instead of producing "<no value>" or
// an empty password. Validate catches most such mistakes, including
// references to phases or objects that do not exist, before anything is
// frozen; the post-hook is where a late failure hurts, because the
// application stays frozen. Callers should also render the post-hook's
// phases that depend only on objects before running the pre-hook.
//
// # Session-held locks
//
// Some locks last only as long as the client session that took them: MariaDB
// and MySQL FLUSH TABLES WITH READ LOCK, PostgreSQL pg_backup_start. A
// KubeExec of `mariadb -e "FLUSH TABLES WITH READ LOCK"` locks nothing, since
// the client exits and the server drops the lock with the session.
// [FuncKubeExecSession], freezeframe's own function, is allowed only in the
// phases of backupPrehook: it starts a command with stdin open, writes
// "stdin", counts the lock as taken when "readyPattern" matches the command's
// standard output, and keeps the session open until the resume writes
// "releaseInput" and closes stdin. Decode it with [Phase.SessionSpec] rather
// than ExecSpec; running it is the hooker's session package.
//
// # Secrets
//
// Secret values reach templates as bytes (pipe them through toString, as in
// Kanister) and end up in rendered commands. Errors from this package never
// contain them: template errors are redacted with the Secret values in
// Params, and other errors never quote values. Logs are the caller's: pass
// rendered commands and command output through [Redact] with
// [Params.SecretValues].
//
// # Options
//
// A request's or policy's options reach templates as .Options, from whoever
// may request a backup. A value outside [SafeOptionChars] reaches rendered
// args only through the template function shellquote ([ShellQuote]), or
// rendering fails with [ErrUnquotedOption] naming the option: a value such
// as "x; touch /tmp/pwned" never lands in a `bash -c` script as is.
//
// # Limits
//
// Rendering is bounded in memory whatever the input: one template string
// renders to at most [MaxRenderedSize] (64 KiB), and every template function
// refuses a result longer than that or a list or map of more than
// [MaxListLength] (10,000) items; functions whose result grows with a
// number (repeat, indent, until, seq, randAlpha, ...) check the number
// before building anything, since it may come from a request's options.
// Time is not bounded: a blueprint that ranges over a large integer
// ({{ range 1000000000 }}) loops that long, so who may create Blueprints
// must be trusted as much as who may exec into the pods they name.
//
// # Differences from Kanister
//
// The sprig functions env, expandenv and getHostByName are not available
// (they would expose the hooker's environment, or do I/O), nor are the key
// and certificate generators (genPrivateKey, genCA, genSelfSignedCert,
// genSignedCert and their WithKey forms: seconds of CPU per call), and index
// fails on a missing map key. shellquote is freezeframe's own, and option
// values a shell could interpret must pass through it. KubeExec and
// KubeExecAll take an optional "timeout" (a Go duration). KubeExecAll drops
// repeated pod and container names.
package blueprint
