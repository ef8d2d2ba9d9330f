package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kinds of database server the sandbox runs.
const (
	Redis    = "redis"
	MariaDB  = "mariadb"
	Postgres = "postgres"
)

// Server is a real database server process on a random loopback port.
type Server struct {
	Kind string
	Host string
	Port int
	// Socket is the unix socket (MariaDB, PostgreSQL's socket directory), if any.
	Socket   string
	User     string
	Password string
	// DataDir is the server's data directory.
	DataDir string
	// Env is what a client needs to reach the server (REDIS_PORT, MYSQL_UNIX_PORT,
	// PGPORT, passwords, ...); `kubectl exec` into the pod runs with it.
	Env map[string]string

	proc *Process
}

// Stop stops the server and waits for it to exit.
func (s *Server) Stop() {
	s.proc.Stop(30 * time.Second)
}

// Database is a server behind a kwok pod: a Deployment or StatefulSet whose pod's
// container execs (via a kwok Exec rule) run locally with the server's Env, a PVC whose directory holds the
// server's data, and a Secret with the password.
type Database struct {
	*Server
	Namespace string
	// Workload is the Deployment or StatefulSet name.
	Workload string
	// Pod and Container are what `kubectl exec <Pod> -c <Container>` takes.
	Pod       string
	Container string
	// Secret holds the password under the key "password".
	Secret string
	Volume *Volume
}

// DatabaseOptions configures StartRedis, StartMariaDB and StartPostgres.
type DatabaseOptions struct {
	Namespace string
	// Name names the workload; the PVC is <Name>-data (data-<Name>-0 for a StatefulSet),
	// the Secret <Name>-credentials.
	Name string
	// Password is generated when empty.
	Password string
	// Annotations and Labels go on the workload (e.g. a Blueprint binding).
	Annotations map[string]string
	Labels      map[string]string
	// PodAnnotations go on the pod template.
	PodAnnotations map[string]string
	// Size of the PVC; "1Gi" when empty.
	Size string
	// StatefulSet makes a StatefulSet (claim from a volumeClaimTemplate, data-<Name>-0)
	// instead of a Deployment.
	StatefulSet bool
}

// StartRedis, StartMariaDB and StartPostgres create a Secret, a dynamically provisioned
// PVC and a workload annotated for the sandbox's pod watcher (DatabaseAnnotation, ...),
// which runs the server with its data in the PVC's directory and gives the pod its exec
// rule; they return once `kubectl exec` into the pod works.

// StartRedis starts redis-server (AOF on, fsync always, so acknowledged writes are in the
// volume) behind a kwok pod. In the pod, `redis-cli` reaches it without flags.
func (c *Cluster) StartRedis(ctx context.Context, opts DatabaseOptions) (*Database, error) {
	return c.startDatabase(ctx, Redis, "redis:7", opts)
}

// StartMariaDB starts mariadbd behind a kwok pod. In the pod, `mariadb` (and `mysql`)
// connect as root over the server's socket without flags.
func (c *Cluster) StartMariaDB(ctx context.Context, opts DatabaseOptions) (*Database, error) {
	return c.startDatabase(ctx, MariaDB, "mariadb:10.11", opts)
}

// StartPostgres starts PostgreSQL behind a kwok pod. In the pod, `psql` connects as
// postgres without flags.
func (c *Cluster) StartPostgres(ctx context.Context, opts DatabaseOptions) (*Database, error) {
	return c.startDatabase(ctx, Postgres, "postgres:15", opts)
}

func (c *Cluster) startDatabase(ctx context.Context, kind, image string, opts DatabaseOptions) (*Database, error) {
	if opts.Namespace == "" || opts.Name == "" {
		return nil, errors.New("start database: Namespace and Name are required")
	}
	if opts.Password == "" {
		opts.Password = randomHex(8)
	}
	if opts.Size == "" {
		opts.Size = "1Gi"
	}
	ns, name := opts.Namespace, opts.Name
	start := time.Now()
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		return nil, err
	}
	db := &Database{Namespace: ns, Workload: name, Container: kind, Secret: name + "-credentials"}
	_, err := c.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: db.Secret},
		StringData: map[string]string{"password": opts.Password},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("start %s %s/%s: %w", kind, ns, name, err)
	}
	// A dynamically provisioned claim, as the manifests of a real application have.
	claim := name + "-data"
	if opts.StatefulSet {
		claim = "data-" + name + "-0"
	}
	qty, err := resource.ParseQuantity(opts.Size)
	if err != nil {
		return nil, fmt.Errorf("start %s %s/%s: size: %w", kind, ns, name, err)
	}
	pvcSpec := corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: qty}},
	}
	if !opts.StatefulSet {
		_, err = c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: claim},
			Spec:       pvcSpec,
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("start %s %s/%s: %w", kind, ns, name, err)
		}
	}
	selector := map[string]string{"app.kubernetes.io/name": kind, "app.kubernetes.io/instance": name}
	labels := maps.Clone(opts.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, selector)
	podAnnotations := maps.Clone(opts.PodAnnotations)
	if podAnnotations == nil {
		podAnnotations = map[string]string{}
	}
	podAnnotations[DatabaseAnnotation] = kind
	podAnnotations[PasswordSecretAnnotation] = db.Secret + "/password"
	podAnnotations[VolumeAnnotation] = "data"
	podAnnotations[ContainerAnnotation] = kind
	replicas := int32(1)
	podTemplate := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: podAnnotations},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:  kind,
				Image: image,
				Env: []corev1.EnvVar{{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{
					SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: db.Secret},
						Key:                  "password",
					},
				}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
		},
	}
	meta := metav1.ObjectMeta{Name: name, Labels: labels, Annotations: opts.Annotations}
	if opts.StatefulSet {
		_, err = c.Client.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
			ObjectMeta: meta,
			Spec: appsv1.StatefulSetSpec{
				Replicas:             &replicas,
				Selector:             &metav1.LabelSelector{MatchLabels: selector},
				Template:             podTemplate,
				VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: pvcSpec}},
			},
		}, metav1.CreateOptions{})
	} else {
		podTemplate.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
		}}}
		_, err = c.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: meta,
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: selector},
				Template: podTemplate,
			},
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("start %s %s/%s: %w", kind, ns, name, err)
	}
	sel := metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: selector})
	err = waitFor(ctx, nil, 60*time.Second, "pod of "+ns+"/"+name+" Running", func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil || len(pods.Items) == 0 {
			return false, err
		}
		p := pods.Items[0]
		db.Pod = p.Name
		return p.Status.Phase == corev1.PodRunning, fmt.Errorf("pod %s is %s", p.Name, p.Status.Phase)
	})
	if err != nil {
		return nil, err
	}
	if db.Server, db.Volume, err = c.DatabaseFor(ctx, ns, claim); err != nil {
		return nil, err
	}
	if err := c.WaitExec(ctx, ns, db.Pod, kind); err != nil {
		return nil, err
	}
	c.logf("%s %s/%s: pod %s ready in %.1fs", kind, ns, name, db.Pod, time.Since(start).Seconds())
	return db, nil
}

// RunServer starts a database server of the given kind (Redis, MariaDB, Postgres) with
// its data in dataDir, initialising it if empty, on a random loopback port. It stops with
// the cluster, or earlier by Server.Stop. Starting one on a snapshot's copy is how a
// backup is checked.
func (c *Cluster) RunServer(ctx context.Context, kind, dataDir, password string) (*Server, error) {
	runDir, err := os.MkdirTemp(filepath.Join(c.StateDir), "db-"+kind+"-")
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", kind, err)
	}
	s, err := startServer(ctx, kind, dataDir, password, runDir, c.logDir)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.databases = append(c.databases, s.proc)
	c.mu.Unlock()
	return s, nil
}

// StartServer starts a database server as RunServer does, without a cluster: for a test
// that needs a real server and nothing else (a lock held through a session). Its socket,
// client configuration and log go in runDir, whose path must be short (a unix socket's
// path is at most 107 bytes). The caller stops it with Server.Stop; if the process that
// started it dies first, the server goes too.
func StartServer(ctx context.Context, kind, dataDir, password, runDir string) (*Server, error) {
	return startServer(ctx, kind, dataDir, password, runDir, runDir)
}

// startServer starts the server with its log in logDir, on another port if the one it
// picked was taken meanwhile.
func startServer(ctx context.Context, kind, dataDir, password, runDir, logDir string) (*Server, error) {
	if err := os.Chmod(runDir, 0o777); err != nil { // PostgreSQL runs as postgres
		return nil, fmt.Errorf("run %s: %w", kind, err)
	}
	for attempt := 1; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		s := &Server{Kind: kind, Host: "127.0.0.1", Port: port, Password: password, DataDir: dataDir}
		var cmd *exec.Cmd
		var ready func(context.Context) (bool, error)
		switch kind {
		case Redis:
			cmd, ready, err = s.redis(runDir)
		case MariaDB:
			cmd, ready, err = s.mariadb(ctx, runDir)
		case Postgres:
			cmd, ready, err = s.postgres(ctx, runDir)
		default:
			return nil, fmt.Errorf("run %s: unknown kind", kind)
		}
		if err != nil {
			return nil, fmt.Errorf("run %s: %w", kind, err)
		}
		s.proc, err = Spawn(fmt.Sprintf("%s-%d", filepath.Base(runDir), attempt), logDir, cmd)
		if err != nil {
			return nil, err
		}
		err = waitFor(ctx, s.proc, 60*time.Second, kind+" ready", ready)
		if err == nil {
			return s, nil
		}
		s.Stop()
		// The port was free when picked, but another process may have bound it first.
		if log, _ := os.ReadFile(s.proc.Log()); attempt < 3 && bytes.Contains(log, []byte("Address already in use")) {
			continue
		}
		return nil, err
	}
}

func (s *Server) redis(runDir string) (*exec.Cmd, func(context.Context) (bool, error), error) {
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		return nil, nil, err
	}
	s.Socket = filepath.Join(runDir, "redis.sock")
	s.Env = map[string]string{
		"REDIS_HOST":     s.Host,
		"REDIS_PORT":     strconv.Itoa(s.Port),
		"REDIS_PASSWORD": s.Password,
		"REDISCLI_AUTH":  s.Password, // redis-cli's own variable
	}
	cmd := exec.Command("redis-server",
		"--bind", s.Host, "--port", strconv.Itoa(s.Port), "--unixsocket", s.Socket,
		"--dir", s.DataDir, "--requirepass", s.Password,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--daemonize", "no", "--protected-mode", "no")
	ready := func(ctx context.Context) (bool, error) {
		out, err := clientCmd(ctx, s.Env, "redis-cli", "-h", s.Host, "-p", strconv.Itoa(s.Port), "PING")
		return err == nil && strings.TrimSpace(out) == "PONG", errOr(err, out)
	}
	return cmd, ready, nil
}

func (s *Server) mariadb(ctx context.Context, runDir string) (*exec.Cmd, func(context.Context) (bool, error), error) {
	s.User = "root"
	s.Socket = filepath.Join(runDir, "mysqld.sock")
	// Debian's /etc/mysql/my.cnf names /run/mysqld/mysqld.sock, which beats
	// MYSQL_UNIX_PORT; a ~/.my.cnf is read after it, so HOME points at one.
	cnf := fmt.Sprintf("[client]\nsocket=%s\nport=%d\nuser=%s\npassword=%s\n", s.Socket, s.Port, s.User, s.Password)
	if err := os.WriteFile(filepath.Join(runDir, ".my.cnf"), []byte(cnf), 0o600); err != nil {
		return nil, nil, err
	}
	s.Env = map[string]string{
		"HOME":                  runDir,
		"MYSQL_UNIX_PORT":       s.Socket,
		"MYSQL_TCP_PORT":        strconv.Itoa(s.Port),
		"MYSQL_PWD":             s.Password,
		"USER":                  s.User,
		"MARIADB_ROOT_PASSWORD": s.Password,
		"MYSQL_ROOT_PASSWORD":   s.Password,
	}
	asRoot := os.Geteuid() == 0
	if _, err := os.Stat(filepath.Join(s.DataDir, "mysql")); errors.Is(err, os.ErrNotExist) {
		args := []string{"--no-defaults", "--datadir=" + s.DataDir, "--auth-root-authentication-method=normal", "--skip-test-db"}
		if asRoot {
			args = append(args, "--user=root")
		}
		if out, err := exec.CommandContext(ctx, sbin("mariadb-install-db"), args...).CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("mariadb-install-db: %w: %s", err, out)
		}
	}
	init := filepath.Join(runDir, "init.sql")
	q := strings.ReplaceAll(s.Password, "'", "''")
	sql := fmt.Sprintf("ALTER USER 'root'@'localhost' IDENTIFIED BY '%s';\n"+
		"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '%s';\n"+
		"GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n", q, q)
	if err := os.WriteFile(init, []byte(sql), 0o600); err != nil {
		return nil, nil, err
	}
	args := []string{"--no-defaults", "--datadir=" + s.DataDir, "--socket=" + s.Socket,
		"--port=" + strconv.Itoa(s.Port), "--bind-address=" + s.Host, "--skip-name-resolve",
		"--pid-file=" + filepath.Join(runDir, "mysqld.pid"), "--init-file=" + init,
		"--innodb-use-native-aio=0"}
	if asRoot {
		args = append(args, "--user=root")
	}
	cmd := exec.Command(sbin("mariadbd"), args...)
	ready := func(ctx context.Context) (bool, error) {
		out, err := clientCmd(ctx, s.Env, "mariadb", "-N", "-e", "SELECT 1")
		return err == nil && strings.TrimSpace(out) == "1", errOr(err, out)
	}
	return cmd, ready, nil
}

func (s *Server) postgres(ctx context.Context, runDir string) (*exec.Cmd, func(context.Context) (bool, error), error) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		return nil, nil, errors.New("no /usr/lib/postgresql/*/bin/postgres (Debian package postgresql)")
	}
	sort.Strings(bins)
	binDir := filepath.Dir(bins[len(bins)-1])
	s.User = "postgres"
	s.Socket = runDir
	s.Env = map[string]string{
		"PGHOST":            s.Host,
		"PGPORT":            strconv.Itoa(s.Port),
		"PGUSER":            s.User,
		"PGPASSWORD":        s.Password,
		"PGDATABASE":        "postgres",
		"POSTGRES_PASSWORD": s.Password,
	}
	// PostgreSQL refuses to run as root: run it as the postgres account.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, nil, fmt.Errorf("postgres must not run as root and there is no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	asPostgres := func(cmd *exec.Cmd) *exec.Cmd {
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		return cmd
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
			return nil, nil, err
		}
		pwfile := filepath.Join(runDir, "pwfile")
		if err := os.WriteFile(pwfile, []byte(s.Password+"\n"), 0o644); err != nil {
			return nil, nil, err
		}
		if cred != nil {
			for _, p := range []string{s.DataDir, pwfile} {
				if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
					return nil, nil, err
				}
			}
		}
		initdb := asPostgres(exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
			"-D", s.DataDir, "-U", s.User, "--pwfile="+pwfile, "--auth-local=trust", "--auth-host=scram-sha-256"))
		if out, err := initdb.CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("initdb: %w: %s", err, out)
		}
		_ = os.Remove(pwfile)
	}
	cmd := asPostgres(exec.Command(filepath.Join(binDir, "postgres"), "-D", s.DataDir,
		"-p", strconv.Itoa(s.Port), "-k", runDir, "-c", "listen_addresses="+s.Host))
	ready := func(ctx context.Context) (bool, error) {
		out, err := clientCmd(ctx, s.Env, "psql", "-XAtc", "SELECT 1")
		return err == nil && strings.TrimSpace(out) == "1", errOr(err, out)
	}
	return cmd, ready, nil
}

// sbin finds a server's binary on PATH or in the sbin directories, which are often not
// on a user's PATH (mariadbd); the bare name when it is nowhere, for exec to say so.
func sbin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	return name
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// clientCmd runs a database client with env added, for readiness checks.
func clientCmd(ctx context.Context, env map[string]string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func errOr(err error, out string) error {
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
	}
	return fmt.Errorf("unexpected reply %q", strings.TrimSpace(out))
}
