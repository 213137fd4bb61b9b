package natstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ExternalOKEnv names the environment variable that, set to "1", lets tests
// skip what an external server cannot do (restart, stop, a special
// configuration) even under CI=true, where such a skip is otherwise a
// failure. .ci/run sets it for its pass against external servers.
const ExternalOKEnv = "RELAY_EXTERNAL_OK"

// cleanupTimeout bounds the removal of a test's streams from an external
// server.
const cleanupTimeout = 10 * time.Second

var (
	// runID makes this test process's topics differ from those of every
	// other run on a shared server.
	runID = func() string {
		b := make([]byte, 4)
		rand.Read(b)
		return hex.EncodeToString(b)
	}()
	topicSeq atomic.Int64
	prefixes sync.Map // testing.TB → string
)

// External reports whether tests use the server at NATS_URL instead of
// embedding one.
func External() bool { return os.Getenv("NATS_URL") != "" }

// Topic returns name behind a prefix of t's own, "rt<run>_<n>." (for
// example "rt3f9a2c1d_7.orders.placed"): the run part differs between test
// processes and n between tests, so that tests sharing a server from NATS_URL
// never see each other's streams, and the same t gets the same prefix on
// every call. Put every topic a test uses through it, its dead-letter topic
// included (topic+".dead" keeps the prefix by itself). The result is a valid
// relay topic if name is; it is 14 to 22 bytes longer than name.
//
// With NATS_URL set, the streams whose subjects carry t's prefix are deleted
// in t.Cleanup (registered by t's first call, so it runs after the cleanups
// of brokers made later in t); a failure to delete them fails t. Embedded
// servers are thrown away with their store, so nothing is deleted there.
func Topic(t testing.TB, name string) string {
	t.Helper()
	return prefixOf(t) + "." + name
}

// prefixOf returns t's prefix, making it and registering the cleanup at the
// first call.
func prefixOf(t testing.TB) string {
	if p, ok := prefixes.Load(t); ok {
		return p.(string)
	}
	p := fmt.Sprintf("rt%s_%d", runID, topicSeq.Add(1))
	if actual, loaded := prefixes.LoadOrStore(t, p); loaded {
		return actual.(string)
	}
	t.Cleanup(func() {
		prefixes.Delete(t)
		if url := os.Getenv("NATS_URL"); url != "" {
			if err := DeleteStreams(url, p+".>"); err != nil {
				t.Errorf("natstest: remove the test's streams: %v", err)
			}
		}
	})
	return p
}

// DeleteStreams deletes, on the server at url, every stream with a subject
// that matches subject (a NATS subject filter such as "orders.>"). It waits
// at most 10 seconds and returns the first error.
func DeleteStreams(url, subject string) error {
	nc, err := nats.Connect(url, nats.Timeout(cleanupTimeout))
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	names := js.StreamNames(ctx, jetstream.WithStreamListSubject(subject))
	var found []string
	for name := range names.Name() {
		found = append(found, name)
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list streams of %q: %w", subject, err)
	}
	nc.Close()
	return deleteNamed(url, found)
}

// RequireControl skips t when the tests use the server at NATS_URL, which
// they cannot restart, stop or configure; call it first in a test that
// needs to. Under CI=true it fails t instead, unless RELAY_EXTERNAL_OK=1
// ([ExternalOKEnv]) says that such skips are expected.
func RequireControl(t testing.TB) {
	t.Helper()
	if !External() {
		return
	}
	endUncontrolled(t, "natstest: this test controls its NATS server (restart, stop or configuration), which it cannot do to the external server at NATS_URL; unset NATS_URL to run it")
}

// endUncontrolled skips t with msg, or fails it under CI=true unless
// RELAY_EXTERNAL_OK=1.
func endUncontrolled(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" && os.Getenv(ExternalOKEnv) != "1" {
		t.Fatal(msg + " (CI=true; set " + ExternalOKEnv + "=1 to allow this skip)")
	}
	t.Skip(msg)
}

// RemoveNewStreams is for names a test does not choose, such as those of
// relay's conformance suite ("relay_test_…", "relay_wm_…"): with NATS_URL
// set, it notes the streams that exist now and, in t.Cleanup, deletes every
// stream created since whose subjects all begin with one of prefixes. A run
// of the same names on the same server at the same time could lose its
// streams, so the suite's names are random. Without NATS_URL it does
// nothing. It fails t when the server cannot be asked.
func RemoveNewStreams(t testing.TB, prefixes ...string) {
	t.Helper()
	url := os.Getenv("NATS_URL")
	if url == "" {
		return
	}
	before, err := streamSubjects(url)
	if err != nil {
		t.Fatalf("natstest: list streams at NATS_URL: %v", err)
	}
	t.Cleanup(func() {
		after, err := streamSubjects(url)
		if err != nil {
			t.Errorf("natstest: list streams at NATS_URL: %v", err)
			return
		}
		var doomed []string
		for name, subjects := range after {
			if _, old := before[name]; !old && allPrefixed(subjects, prefixes) {
				doomed = append(doomed, name)
			}
		}
		if err := deleteNamed(url, doomed); err != nil {
			t.Errorf("natstest: remove the test's streams: %v", err)
		}
	})
}

func allPrefixed(subjects, prefixes []string) bool {
	for _, s := range subjects {
		ok := false
		for _, p := range prefixes {
			ok = ok || strings.HasPrefix(s, p)
		}
		if !ok {
			return false
		}
	}
	return len(subjects) > 0
}

// streamSubjects returns the subjects of every stream on the server at url.
func streamSubjects(url string) (map[string][]string, error) {
	nc, err := nats.Connect(url, nats.Timeout(cleanupTimeout))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	streams := js.ListStreams(ctx)
	out := make(map[string][]string)
	for info := range streams.Info() {
		out[info.Config.Name] = info.Config.Subjects
	}
	return out, streams.Err()
}

// deleteNamed deletes the named streams on the server at url.
func deleteNamed(url string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	nc, err := nats.Connect(url, nats.Timeout(cleanupTimeout))
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	for _, name := range names {
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete stream %q: %w", name, err)
		}
	}
	return nil
}

// RequireServerAtLeast skips t, with why, when the server nc is connected to
// is older than version ("2.10.14"): for a test whose expectation a known
// defect of older servers breaks. It is not a skip for want of a server:
// under CI=true it skips too, and says so.
func RequireServerAtLeast(t testing.TB, nc *nats.Conn, version, why string) {
	t.Helper()
	if got := nc.ConnectedServerVersion(); olderThan(got, version) {
		t.Skipf("nats-server %s is older than %s: %s", got, version, why)
	}
}

// ServerAtLeast reports whether the server nc is connected to is version
// ("2.12.0") or newer.
func ServerAtLeast(nc *nats.Conn, version string) bool {
	return !olderThan(nc.ConnectedServerVersion(), version)
}

// olderThan reports whether the dotted version a is older than b; a part
// that does not parse counts as 0.
func olderThan(a, b string) bool {
	pa, pb := strings.Split(strings.TrimPrefix(a, "v"), "."), strings.Split(strings.TrimPrefix(b, "v"), ".")
	for i := range max(len(pa), len(pb)) {
		var x, y int
		if i < len(pa) {
			fmt.Sscanf(pa[i], "%d", &x)
		}
		if i < len(pb) {
			fmt.Sscanf(pb[i], "%d", &y)
		}
		if x != y {
			return x < y
		}
	}
	return false
}
