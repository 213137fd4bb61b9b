package redistest

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// readyTimeout bounds how long starting waits for the server to answer
	// PING.
	readyTimeout = 10 * time.Second
	// stopTimeout bounds how long a graceful stop waits before SIGKILL.
	stopTimeout = 10 * time.Second
)

// Config describes a redis-server child process. The zero value is a server
// without persistence on a free port in a temporary directory.
type Config struct {
	// Dir is the server's working directory, where its log (redis.log) and
	// append-only files live. Empty makes a temporary directory that
	// [Server.Shutdown] removes; a directory given here is kept.
	Dir string
	// Port is the port on 127.0.0.1. Zero picks a free port at the first
	// start; later starts reuse it.
	Port int
	// AppendOnly turns on the append-only file with an fsync per write
	// (--appendonly yes --appendfsync always), so every acknowledged write
	// survives [Server.Restart] and [Server.Kill]. False runs without
	// persistence (--save "" --appendonly no): a restart loses all data.
	AppendOnly bool
}

// Server is a Redis server from [Run] or [Start]. Its methods are safe for
// concurrent use.
type Server struct {
	mu     sync.Mutex
	bin    string
	cfg    Config // Dir and Port are fixed after the first start
	ownDir bool
	cmd    *exec.Cmd     // nil while stopped
	done   chan struct{} // closed once cmd has exited
	paused bool          // cmd got SIGSTOP and no SIGCONT since
	prefix string
	extra  []string // more redis-server arguments: those of a cluster node

	// For a server from REDIS_URL or Docker: fixed says why it cannot be
	// stopped, tb reports it, and purge removes a container.
	addr, url, fixed string
	tb               testing.TB
	purge            func() error
}

// Run starts redis-server from PATH as a child process and returns once it
// answers PING (waiting at most 10 seconds). It returns an error wrapping
// [exec.ErrNotFound] when redis-server is not on PATH. The caller must call
// [Server.Shutdown].
func Run(cfg Config) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	s := &Server{bin: bin, cfg: cfg, prefix: newPrefix("run")}
	if s.cfg.Dir == "" {
		if s.cfg.Dir, err = os.MkdirTemp("", "redistest-"); err != nil {
			return nil, fmt.Errorf("redistest: make dir: %w", err)
		}
		s.ownDir = true
	}
	// A free port may be taken by someone else before redis-server binds
	// it; then try another.
	pick := cfg.Port == 0
	for attempt := 1; ; attempt++ {
		if pick {
			if s.cfg.Port, err = freePort(); err != nil {
				break
			}
		}
		if err = s.Start(); err == nil || !pick || attempt == 3 {
			break
		}
	}
	if err != nil {
		s.Shutdown()
		return nil, err
	}
	return s, nil
}

// Start, on a stopped or killed server, starts redis-server again on the
// same port and directory, and returns once it answers PING (waiting at most
// 10 seconds); on a running server it does nothing. On a server from
// REDIS_URL or Docker it skips the test (fails it under CI=true).
func (s *Server) Start() error {
	s.controllable("start")
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked()
}

func (s *Server) startLocked() error {
	if s.cmd != nil {
		return nil
	}
	logPath := filepath.Join(s.cfg.Dir, "redis.log")
	log, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	args := append([]string{"--port", strconv.Itoa(s.cfg.Port), "--bind", "127.0.0.1", "--dir", s.cfg.Dir},
		persistArgs(s.cfg.AppendOnly)...)
	args = append(args, s.extra...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.cfg.Dir, log, log
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	log.Close()
	if err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait() // the exit status of a killed server says nothing useful
		close(done)
	}()
	s.cmd, s.done = cmd, done
	if err := waitPing(s.addrLocked(), done); err != nil {
		s.stopLocked(false)
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("redistest: redis-server on %s: %w; log:\n%s", s.addrLocked(), err, lastLines(out, 5))
	}
	return nil
}

func persistArgs(appendOnly bool) []string {
	if appendOnly {
		return []string{"--save", "", "--appendonly", "yes", "--appendfsync", "always"}
	}
	return []string{"--save", "", "--appendonly", "no"}
}

// Stop stops the server gracefully (SIGTERM) and waits for it to exit,
// killing it after 10 seconds, when it returns an error. A later
// [Server.Start] reuses the port and directory. On a server from REDIS_URL
// or Docker it skips the test (fails it under CI=true).
func (s *Server) Stop() error {
	s.controllable("stop")
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(true)
}

// Kill kills the server with SIGKILL, as in a crash, and waits for it to
// exit. Writes survive only with [Config.AppendOnly]. A later [Server.Start]
// reuses the port and directory. On a server from REDIS_URL or Docker it
// skips the test (fails it under CI=true).
func (s *Server) Kill() error {
	s.controllable("kill")
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(false)
}

// Restart is [Server.Stop] followed by [Server.Start]: clients see the
// connection drop, and the data survives only with [Config.AppendOnly].
func (s *Server) Restart() error {
	s.controllable("restart")
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(true); err != nil {
		return err
	}
	return s.startLocked()
}

func (s *Server) stopLocked(graceful bool) error {
	if s.cmd == nil {
		return nil
	}
	if s.paused {
		// A stopped process keeps SIGTERM pending until it continues.
		s.cmd.Process.Signal(syscall.SIGCONT)
		s.paused = false
	}
	var err error
	if !graceful || s.cmd.Process.Signal(syscall.SIGTERM) != nil {
		s.cmd.Process.Kill()
	}
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.cmd.Process.Kill()
		<-s.done
		err = fmt.Errorf("redistest: redis-server did not stop within %s of SIGTERM; killed", stopTimeout)
	}
	s.cmd, s.done = nil, nil
	return err
}

// Pause stops the server process with SIGSTOP, as a hung server: its
// connections stay open and the kernel still accepts new ones, but nothing is
// answered until [Server.Resume]. Stop, Kill, Restart and Shutdown resume it
// first. It returns an error when the server is not running. On a server
// from REDIS_URL or Docker it skips the test (fails it under CI=true).
func (s *Server) Pause() error { return s.signal("pause", syscall.SIGSTOP, true) }

// Resume continues a server that [Server.Pause] stopped (SIGCONT); on a
// server that is not paused it does nothing. It returns an error when the
// server is not running. On a server from REDIS_URL or Docker it skips the
// test (fails it under CI=true).
func (s *Server) Resume() error { return s.signal("resume", syscall.SIGCONT, false) }

func (s *Server) signal(op string, sig syscall.Signal, paused bool) error {
	s.controllable(op)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("redistest: cannot %s: redis-server is not running", op)
	}
	if s.paused == paused {
		return nil
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("redistest: %s redis-server: %w", op, err)
	}
	s.paused = paused
	return nil
}

// Shutdown kills the server, waits for it to exit, and removes its directory
// if [Run] made it; for a server from Docker it removes the container. It
// may be called more than once. On a server from REDIS_URL it does nothing.
func (s *Server) Shutdown() error {
	if s.purge != nil {
		return s.purge()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(false)
	if !s.ownDir {
		return nil
	}
	s.ownDir = false
	if err := os.RemoveAll(s.cfg.Dir); err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	return nil
}

// Addr is the server's "host:port". It stays the same across restarts.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrLocked()
}

func (s *Server) addrLocked() string {
	if s.addr != "" {
		return s.addr
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.cfg.Port))
}

// URL is REDIS_URL, or "redis://host:port" for a server started here.
func (s *Server) URL() string {
	if s.url != "" {
		return s.url
	}
	return "redis://" + s.Addr()
}

// KeyPrefix is unique to this server value: the test's name with unsafe
// characters replaced, a random suffix, and a trailing '.', for example
// "TestRetry_nack-3f9a2c1d.". Put it in front of every topic and key so that
// tests sharing a server from REDIS_URL cannot collide; prefix+"orders" is a
// valid relay topic.
func (s *Server) KeyPrefix() string { return s.prefix }

// controllable ends the test when the server cannot be stopped or started
// from here: skipped normally, failed under CI=true.
func (s *Server) controllable(op string) {
	if s.fixed == "" {
		return
	}
	s.tb.Helper()
	endUncontrolled(s.tb, fmt.Sprintf("redistest: cannot %s %s; put redis-server on PATH and unset REDIS_URL to run this test", op, s.fixed))
}

// waitPing polls addr until it answers PING with PONG, done is closed (the
// server exited), or readyTimeout passes.
func waitPing(addr string, done <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		err := ping(addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG within %s: %w", readyTimeout, err)
		}
		select {
		case <-done:
			return errors.New("exited during start")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ping speaks RESP directly so that readiness checks need no client and
// leave no goroutine behind. A server still loading its AOF answers -LOADING.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func newPrefix(name string) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, name)
	b := make([]byte, 4)
	rand.Read(b)
	return clean + "-" + hex.EncodeToString(b) + "."
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
