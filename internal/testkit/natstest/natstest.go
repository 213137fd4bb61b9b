package natstest

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// readyTimeout bounds how long Run, Start and Restart wait for the server to
// accept clients.
const readyTimeout = 10 * time.Second

// Config describes an embedded server. The zero value is a server on a free
// port with a temporary store and the default maximum payload.
type Config struct {
	// StoreDir is the JetStream store directory. Empty makes a temporary
	// directory that [Server.Shutdown] removes; a directory given here is
	// kept.
	StoreDir string
	// Port is the client port on 127.0.0.1. Zero picks a free port at the
	// first start; later starts reuse it.
	Port int
	// MaxPayload is the largest message the server accepts, in bytes. Zero
	// keeps the server default, 1 MiB.
	MaxPayload int32
	// NoJetStream starts a core NATS server, without JetStream: what a
	// client sees of a server configured without it.
	NoJetStream bool
}

// Server is a NATS server started by [Run] or [Start]. Its methods are safe
// for concurrent use.
type Server struct {
	mu     sync.Mutex
	cfg    Config // StoreDir and Port are fixed after the first start
	ownDir bool
	ns     *server.Server // nil while stopped

	// external is set when NATS_URL is used; tb then reports why the
	// server cannot be restarted.
	external string
	tb       testing.TB
}

// Run starts an embedded server with JetStream and returns once it accepts
// clients (waiting at most 10 seconds). It logs nothing. The caller must call
// [Server.Shutdown].
func Run(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg}
	if s.cfg.StoreDir == "" {
		dir, err := os.MkdirTemp("", "natstest-")
		if err != nil {
			return nil, fmt.Errorf("natstest: make store dir: %w", err)
		}
		s.cfg.StoreDir, s.ownDir = dir, true
	}
	if err := s.Start(); err != nil {
		s.Shutdown()
		return nil, err
	}
	return s, nil
}

// Start, on a server that is stopped, starts it again on the same port with
// the same store, so file-stored streams survive; on a running server it does
// nothing. On a server from NATS_URL it skips the test (fails it under
// CI=true).
func (s *Server) Start() error {
	if s.external != "" {
		s.cannot("start")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns != nil {
		return nil
	}
	port := s.cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		Host:       "127.0.0.1",
		Port:       port,
		MaxPayload: s.cfg.MaxPayload,
		JetStream:  !s.cfg.NoJetStream,
		StoreDir:   s.cfg.StoreDir,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return fmt.Errorf("natstest: new server: %w", err)
	}
	fatal := &fatalLogger{}
	ns.SetLogger(fatal, false, false)
	go ns.Start()
	if err := waitReady(ns, fatal, !s.cfg.NoJetStream); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return err
	}
	s.ns = ns
	s.cfg.Port = ns.Addr().(*net.TCPAddr).Port
	return nil
}

// Stop shuts the server down, waiting until it has, and keeps its port and
// store for a later [Server.Start]. Clients see an outage. On a server from
// NATS_URL it skips the test (fails it under CI=true).
func (s *Server) Stop() {
	if s.external != "" {
		s.cannot("stop")
	}
	s.stop()
}

func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.ns = nil
	}
}

// Restart is [Server.Stop] followed by [Server.Start]: streams in the file
// store survive, and clients from [Connect] reconnect to the same URL.
func (s *Server) Restart() error {
	if s.external != "" {
		s.cannot("restart")
	}
	s.stop()
	return s.Start()
}

// Shutdown stops the server, waiting until it has, and removes the store
// directory if [Run] made it. It may be called more than once. On a server
// from NATS_URL it does nothing.
func (s *Server) Shutdown() {
	s.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ownDir {
		os.RemoveAll(s.cfg.StoreDir)
		s.ownDir = false
	}
}

// URL is the client URL, "nats://127.0.0.1:port", or NATS_URL. It stays the
// same across restarts.
func (s *Server) URL() string {
	if s.external != "" {
		return s.external
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.cfg.Port))
}

// waitReady waits until ns accepts clients, with JetStream on if jetStream, and returns
// early with the reason when the server gave up (it never exits the process:
// without a logger of its own it only reports through fatalLogger).
func waitReady(ns *server.Server, fatal *fatalLogger, jetStream bool) error {
	deadline := time.Now().Add(readyTimeout)
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		if msg := fatal.message(); msg != "" {
			return fmt.Errorf("natstest: start server: %s", msg)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natstest: server not ready after %s", readyTimeout)
		}
	}
	if jetStream && !ns.JetStreamEnabled() {
		return fmt.Errorf("natstest: JetStream not enabled: %s", fatal.message())
	}
	return nil
}

// fatalLogger keeps the server quiet but remembers why it gave up.
type fatalLogger struct {
	mu  sync.Mutex
	msg string
}

func (l *fatalLogger) Fatalf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msg = fmt.Sprintf(format, v...)
}

func (l *fatalLogger) message() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msg
}

func (*fatalLogger) Noticef(string, ...any) {}
func (*fatalLogger) Warnf(string, ...any)   {}
func (*fatalLogger) Errorf(string, ...any)  {}
func (*fatalLogger) Debugf(string, ...any)  {}
func (*fatalLogger) Tracef(string, ...any)  {}

// cannot ends the test: an external server cannot be controlled from here.
func (s *Server) cannot(op string) {
	s.tb.Helper()
	endUncontrolled(s.tb, fmt.Sprintf("natstest: cannot %s the external server at NATS_URL; unset NATS_URL to use an embedded one", op))
}

// Start starts an embedded server for the test, or uses NATS_URL when it is
// set, and shuts it down in t.Cleanup. cfg, at most one, configures the
// embedded server and is ignored with NATS_URL. Start fails the test if the
// server cannot start.
func Start(t testing.TB, cfg ...Config) *Server {
	t.Helper()
	if len(cfg) > 1 {
		t.Fatal("natstest: Start takes at most one Config")
	}
	if url := os.Getenv("NATS_URL"); url != "" {
		return &Server{external: url, tb: t}
	}
	var c Config
	if len(cfg) == 1 {
		c = cfg[0]
	}
	s, err := Run(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// StartEmbedded embeds a server configured by cfg for the test even when
// NATS_URL is set, and shuts it down in t.Cleanup. It is for tests of how
// relay meets a server configuration that an external server cannot be
// assumed to have (a small max_payload, no JetStream); everything else uses
// [Start].
func StartEmbedded(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// Connect returns a client of s that retries its first connection and
// reconnects forever, every 100 ms, so it rides out restarts and outages. It
// is closed in t.Cleanup; the test must not close it earlier unless it means
// to.
func Connect(t testing.TB, s *Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond),
		nats.RetryOnFailedConnect(true),
	)
	if err != nil {
		t.Fatalf("natstest: connect %s: %v", s.URL(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}
