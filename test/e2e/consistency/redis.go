package consistency

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Redis is a minimal RESP2 client: one connection, one command at a time. It is all a
// writer of numbered keys and a checker need, without a client library.
type Redis struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

// RedisError is an error reply from the server.
type RedisError string

func (e RedisError) Error() string { return "redis: " + string(e) }

// DialRedis connects to addr and authenticates with password (when not empty).
func DialRedis(ctx context.Context, addr, password string) (*Redis, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial redis %s: %w", addr, err)
	}
	c := &Redis{conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn)}
	if password != "" {
		if _, err := c.Do("AUTH", password); err != nil {
			conn.Close()
			return nil, fmt.Errorf("redis %s: auth: %w", addr, err)
		}
	}
	return c, nil
}

// Close closes the connection; a command waiting for its reply returns an error.
func (c *Redis) Close() error { return c.conn.Close() }

// SetDeadline bounds the next commands (zero: no bound).
func (c *Redis) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// Do sends one command and returns its reply: a string (simple or bulk), an int64, nil
// (null bulk), or []any (array). An error reply is a RedisError.
func (c *Redis) Do(args ...string) (any, error) {
	fmt.Fprintf(c.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(c.w, "$%d\r\n%s\r\n", len(a), a)
	}
	if err := c.w.Flush(); err != nil {
		return nil, fmt.Errorf("redis %s: %w", args[0], err)
	}
	v, err := c.read()
	if err != nil {
		var re RedisError
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, fmt.Errorf("redis %s: %w", args[0], err)
	}
	return v, nil
}

func (c *Redis) read() (any, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, RedisError(line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = c.read(); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown reply %q", line)
}

// RedisNumberedKeys reads every key <prefix>:<n> and its value from the server at addr,
// by number.
func RedisNumberedKeys(ctx context.Context, addr, password, prefix string) (map[int]string, error) {
	c, err := DialRedis(ctx, addr, password)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	reply, err := c.Do("KEYS", prefix+":*")
	if err != nil {
		return nil, err
	}
	keys, _ := reply.([]any)
	out := make(map[int]string, len(keys))
	const batch = 1000
	for i := 0; i < len(keys); i += batch {
		chunk := keys[i:min(i+batch, len(keys))]
		args := []string{"MGET"}
		nums := make([]int, len(chunk))
		for j, k := range chunk {
			ks, _ := k.(string)
			n, err := strconv.Atoi(strings.TrimPrefix(ks, prefix+":"))
			if err != nil {
				return nil, fmt.Errorf("unexpected key %q", ks)
			}
			nums[j] = n
			args = append(args, ks)
		}
		reply, err := c.Do(args...)
		if err != nil {
			return nil, err
		}
		vals, _ := reply.([]any)
		if len(vals) != len(chunk) {
			return nil, fmt.Errorf("MGET of %d keys returned %d values", len(chunk), len(vals))
		}
		for j, v := range vals {
			s, _ := v.(string)
			out[nums[j]] = s
		}
	}
	return out, nil
}
