package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// freezeframe's cost per backup in flight (issue 16, item 4): the CPU time and
// the resident memory of the `freezeframe up` process (every service and the
// embedded NATS in one process), read from /proc around each round.

// clockTicksPerSecond is USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat: 100 on every Linux architecture the sandbox runs on.
const clockTicksPerSecond = 100

// processCPU returns the CPU time (user + system) process pid has used.
func processCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces: the
	// fields counted from 3 (state) start after its last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("read cpu time of pid %d: no ')' in /proc/%d/stat", pid, pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	const utime, stime = 14 - 3, 15 - 3 // proc(5) numbers fields from 1
	if len(fields) <= stime {
		return 0, fmt.Errorf("read cpu time of pid %d: %d fields after the name", pid, len(fields))
	}
	var ticks int64
	for _, f := range []string{fields[utime], fields[stime]} {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicksPerSecond, nil
}

// processRSS returns process pid's resident set (VmRSS), in KiB.
func processRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read rss of pid %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read rss of pid %d: %q: %w", pid, rest, err)
		}
		return kib, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read rss of pid %d: %w", pid, err)
	}
	return 0, fmt.Errorf("read rss of pid %d: no VmRSS line", pid)
}

// usageWatch measures one process over one round: CPU time used, and the
// resident set before and at its peak (sampled every 20 ms).
type usageWatch struct {
	pid       int
	cpuBefore time.Duration
	rssBefore int64

	mu   sync.Mutex
	peak int64
	err  error
	stop chan struct{}
	done chan struct{}
}

func watchUsage(pid int) (*usageWatch, error) {
	cpu, err := processCPU(pid)
	if err != nil {
		return nil, err
	}
	rss, err := processRSS(pid)
	if err != nil {
		return nil, err
	}
	u := &usageWatch{pid: pid, cpuBefore: cpu, rssBefore: rss, peak: rss, stop: make(chan struct{}), done: make(chan struct{})}
	go u.sample()
	return u, nil
}

func (u *usageWatch) sample() {
	defer close(u.done)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-u.stop:
			return
		case <-tick.C:
		}
		rss, err := processRSS(u.pid)
		u.mu.Lock()
		if err != nil {
			u.err = err
			u.mu.Unlock()
			return
		}
		u.peak = max(u.peak, rss)
		u.mu.Unlock()
	}
}

// end stops sampling and returns the CPU time used since watchUsage and how
// far the resident set rose above where it was then (KiB, at least 0).
func (u *usageWatch) end() (cpu time.Duration, rssRise int64, err error) {
	close(u.stop)
	<-u.done
	now, err := processCPU(u.pid)
	if err != nil {
		return 0, 0, err
	}
	rss, err := processRSS(u.pid)
	if err != nil {
		return 0, 0, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err != nil {
		return 0, 0, u.err
	}
	return now - u.cpuBefore, max(u.peak, rss) - u.rssBefore, nil
}
