package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Client wrappers put first on the PATH of commands run by `kubectl exec`. A hook written
// for a real pod runs `redis-cli PING` and expects the server on its default port; here
// the server is on a random port, which the pod's Exec rule exports. MariaDB's and
// PostgreSQL's clients read their environment (MYSQL_UNIX_PORT, PGPORT, ...) themselves.
var wrappers = map[string]string{
	"redis-cli": `#!/bin/sh
# sandbox wrapper: point redis-cli at the pod's server (REDIS_HOST/REDIS_PORT from its Exec rule).
exec %s ${REDIS_HOST:+-h "$REDIS_HOST"} ${REDIS_PORT:+-p "$REDIS_PORT"} "$@"
`,
}

func writeWrappers(dir string) error {
	for name, body := range wrappers {
		real, err := exec.LookPath(name)
		if err != nil {
			continue // not installed: nothing to wrap
		}
		body = fmt.Sprintf(body, real)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			return fmt.Errorf("write %s wrapper: %w", name, err)
		}
	}
	return nil
}
