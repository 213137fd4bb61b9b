package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/testkit"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/pubsubtest"
	"github.com/go-relay/relay/redisstreams"
)

// bin is the relay command, built once for the tests: they drive the binary
// as an operator would, against real servers.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relay-cmd")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "relay")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := redistest.Main(m).Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one backend under test: its server flag, and brokers on it.
type env struct {
	name   string
	flag   []string // --nats URL or --redis URL
	broker func(t *testing.T, opts ...any) relay.Broker
	// streams counts the server's consumers of topic (NATS) or consumer groups
	// (Redis), to see that tail leaves none behind.
	consumers func(t *testing.T, topic string) int
}

// quiet is the test brokers' logger: their dead-letter records would bury
// a failure's report.
var quiet = slog.New(slog.DiscardHandler)

func natsEnv(t *testing.T) env {
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return env{
		name: "nats",
		flag: []string{"--nats", srv.URL()},
		broker: func(t *testing.T, opts ...any) relay.Broker {
			o := []natsjs.Option{natsjs.WithBackoff(10*time.Millisecond, 20*time.Millisecond), natsjs.WithMaxDeliver(2), natsjs.WithLogger(quiet)}
			for _, x := range opts {
				o = append(o, x.(natsjs.Option))
			}
			b, err := natsjs.NewBroker(js, o...)
			require.NoError(t, err)
			t.Cleanup(func() { _ = testkit.CloseWithin(t, exitWait, b.Close, "broker Close at cleanup") })
			return b
		},
		consumers: func(t *testing.T, topic string) int {
			s, err := js.Stream(t.Context(), natsjs.StreamName(topic))
			require.NoError(t, err)
			info, err := s.Info(t.Context())
			require.NoError(t, err)
			return info.State.Consumers
		},
	}
}

// redisBroker makes the test brokers of a Redis env over rc: quick
// backoffs, max deliver 2, quiet, closed at cleanup; opts are
// redisstreams.Options.
func redisBroker(rc redis.UniversalClient) func(t *testing.T, opts ...any) relay.Broker {
	return func(t *testing.T, opts ...any) relay.Broker {
		o := []redisstreams.Option{redisstreams.WithBackoff(10*time.Millisecond, 20*time.Millisecond), redisstreams.WithMaxDeliver(2), redisstreams.WithLogger(quiet)}
		for _, x := range opts {
			o = append(o, x.(redisstreams.Option))
		}
		b, err := redisstreams.NewBroker(rc, o...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = testkit.CloseWithin(t, exitWait, b.Close, "broker Close at cleanup") })
		return b
	}
}

func redisEnv(t *testing.T) env {
	srv := redistest.Start(t)
	rc := redistest.Client(t, srv)
	return env{
		name:   "redis",
		flag:   []string{"--redis", srv.URL()},
		broker: redisBroker(rc),
		consumers: func(t *testing.T, topic string) int {
			groups, err := rc.XInfoGroups(t.Context(), topic).Result()
			require.NoError(t, err)
			return len(groups)
		},
	}
}

// group and held options per backend.
func (e env) group(name string) any {
	if e.name == "nats" {
		return natsjs.WithGroup(name)
	}
	return redisstreams.WithGroup(name)
}

// one handler at a time, nothing read ahead: exactly one message pending.
func (e env) single() []any {
	if e.name == "nats" {
		return []any{natsjs.WithConcurrency(1), natsjs.WithPrefetch(0)}
	}
	return []any{redisstreams.WithConcurrency(1), redisstreams.WithPrefetch(0)}
}

func eachBackend(t *testing.T, f func(t *testing.T, e env)) {
	t.Run("nats", func(t *testing.T) { f(t, natsEnv(t)) })
	t.Run("redis", func(t *testing.T) { f(t, redisEnv(t)) })
}

// result is what one run of the command did.
type result struct {
	code           int
	stdout, stderr string
}

// exitWait bounds how long a command takes to exit once signalled.
const exitWait = 20 * time.Second

func relayCmd(t *testing.T, e env, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(append([]string{}, e.flag...), args...)...)
	cmd.Env = append(os.Environ(), "NATS_URL=", "REDIS_URL=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("relay %v: %v", args, err)
	}
	return r
}

func publishN(t *testing.T, b relay.Broker, topic, prefix string, n int) {
	t.Helper()
	for i := range n {
		require.NoError(t, b.Publish(t.Context(), topic, fmt.Appendf(nil, "%s-%d", prefix, i)))
	}
}

// The state of TestStats: 10 acknowledged and 3 dead-lettered by billing,
// which then closes; 5 more published, which billing lags behind by; audit
// holds its first message in a handler, one at a time, nothing read ahead.
func TestStatsFiguresAreWhatTheTestArranged(t *testing.T) {
	eachBackend(t, func(t *testing.T, e env) {
		topic := pubsubtest.NewTopic(t)
		pub := e.broker(t)
		billing := e.broker(t, e.group("billing"))
		var acked atomic.Int32
		require.NoError(t, billing.Subscribe(topic, func(p []byte) error {
			if strings.HasPrefix(string(p), "poison") {
				return fmt.Errorf("cannot bill %s: %w", p, relay.ErrPermanent)
			}
			acked.Add(1)
			return nil
		}))
		publishN(t, pub, topic, "ok", 10)
		publishN(t, pub, topic, "poison", 3)
		require.Eventually(t, func() bool {
			return acked.Load() == 10 && deadCount(t, e, topic) == 3
		}, 20*time.Second, 20*time.Millisecond)
		require.NoError(t, billing.Close())
		publishN(t, pub, topic, "late", 5)

		audit := e.broker(t, append(e.single(), e.group("audit"))...)
		release := make(chan struct{})
		t.Cleanup(sync.OnceFunc(func() { close(release) }))
		var held atomic.Int32
		require.NoError(t, audit.Subscribe(topic, func([]byte) error {
			held.Add(1)
			<-release
			return nil
		}))
		require.Eventually(t, func() bool { return held.Load() == 1 }, 10*time.Second, 10*time.Millisecond)

		r := relayCmd(t, e, "stats", topic)
		require.Equal(t, 0, r.code, "stats: %s", r.stderr)
		rows := table(t, r.stdout)
		require.Len(t, rows, 2, "one row per group:\n%s", r.stdout)
		want := map[string]map[string]string{
			"billing": {"PENDING": "0", "LAG": "5", "REDELIVERED": "0"},
			"audit":   {"PENDING": "1", "LAG": "17", "REDELIVERED": "0"},
		}
		for _, row := range rows {
			assert.Equal(t, topic, row["TOPIC"])
			assert.Equal(t, "18", row["MESSAGES"], "messages stored")
			assert.Equal(t, "3", row["DEAD"], "dead letters")
			w, ok := want[row["GROUP"]]
			require.True(t, ok, "unexpected group %q", row["GROUP"])
			for k, v := range w {
				assert.Equal(t, v, row[k], "group %s column %s", row["GROUP"], k)
			}
		}

		r = relayCmd(t, e, "stats", topic, "--json")
		require.Equal(t, 0, r.code, "stats --json: %s", r.stderr)
		var got []topicJSON
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &got), "stats --json output:\n%s", r.stdout)
		require.Len(t, got, 1)
		assert.EqualValues(t, 18, got[0].Messages)
		assert.EqualValues(t, 3, got[0].DeadLetters)
		require.Len(t, got[0].Groups, 2)
		for _, g := range got[0].Groups {
			for _, row := range rows { // the JSON says what the table says
				if row["GROUP"] == g.Group {
					assert.Equal(t, row["PENDING"], strconv.FormatUint(g.Pending, 10))
					require.NotNil(t, g.Lag)
					assert.Equal(t, row["LAG"], strconv.FormatUint(*g.Lag, 10))
				}
			}
		}

		// Every topic, the dead-letter topic included, with no argument.
		r = relayCmd(t, e, "stats")
		require.Equal(t, 0, r.code, "stats: %s", r.stderr)
		assert.Contains(t, r.stdout, topic+".dead")
	})
}

// deadCount is the number of dead letters of topic, as the command lists
// them (0 when the dead-letter topic does not exist yet).
func deadCount(t *testing.T, e env, topic string) int {
	r := relayCmd(t, e, "dead", "ls", topic, "--json")
	if r.code != 0 {
		return 0
	}
	var dls []deadLetterJSON
	assert.NoError(t, json.Unmarshal([]byte(r.stdout), &dls)) // no require: callers poll from testify's goroutine
	return len(dls)
}

// table parses a table the command printed: a header row and rows of
// columns separated by two spaces or more.
func table(t *testing.T, out string) []map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.NotEmpty(t, lines)
	cells := regexp.MustCompile(`\s{2,}`)
	header := cells.Split(strings.TrimSpace(lines[0]), -1)
	var rows []map[string]string
	for _, l := range lines[1:] {
		cols := cells.Split(strings.TrimSpace(l), -1)
		require.Len(t, cols, len(header), "row %q", l)
		row := map[string]string{}
		for i, h := range header {
			row[h] = cols[i]
		}
		rows = append(rows, row)
	}
	return rows
}

func TestDeadLettersAreListedShownRedrivenAndPurged(t *testing.T) {
	eachBackend(t, func(t *testing.T, e env) {
		topic, heal, got := threeDeadInvoices(t, e)

		r := relayCmd(t, e, "dead", "ls", topic)
		require.Equal(t, 0, r.code, r.stderr)
		rows := table(t, r.stdout)
		require.Len(t, rows, 3)
		for _, row := range rows {
			assert.Equal(t, topic, row["SOURCE"])
			assert.Equal(t, "1", row["ATTEMPTS"])
		}
		var dls []deadLetterJSON
		r = relayCmd(t, e, "dead", "ls", topic, "--json", "--reason", `invoice-[12]\b`)
		require.Equal(t, 0, r.code, r.stderr)
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &dls))
		require.Len(t, dls, 2, "--reason filter")

		// The handlers run concurrently: find each invoice's row by its reason.
		idOf := map[string]string{}
		for _, row := range rows {
			for _, p := range []string{"invoice-0", "invoice-1", "invoice-2"} {
				if strings.Contains(row["REASON"], p) {
					idOf[p] = row["ID"]
				}
			}
		}
		require.Len(t, idOf, 3, "reasons name the invoices: %v", rows)
		r = relayCmd(t, e, "dead", "show", topic, idOf["invoice-1"])
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, "reason:    no customer for invoice-1")
		assert.Contains(t, r.stdout, "\ninvoice-1\n")
		r = relayCmd(t, e, "dead", "show", topic, "no-such-id")
		assert.Equal(t, exitFailed, r.code)

		// Bad input moves nothing.
		r = relayCmd(t, e, "dead", "redrive", topic, "--all", "--to", "not a topic*")
		assert.Equal(t, exitUsage, r.code, "invalid --to: %s", r.stderr)
		r = relayCmd(t, e, "dead", "redrive", topic)
		assert.Equal(t, exitUsage, r.code, "redrive choosing nothing: %s", r.stderr)
		assert.Contains(t, r.stderr, "--all")
		r = relayCmd(t, e, "dead", "redrive", topic, "--all", "--dry-run")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, 3, strings.Count(r.stdout, "would redrive"), r.stdout)
		assert.Equal(t, 3, deadCount(t, e, topic), "after bad input and a dry run")

		heal.Store(true)
		r = relayCmd(t, e, "dead", "redrive", topic, "--reason", "invoice-0")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, "moved 1, skipped 0, failed 0 (of 1 chosen)")
		select {
		case p := <-got:
			assert.Equal(t, "invoice-0", p)
		case <-time.After(10 * time.Second):
			t.Fatal("redriven message not handled")
		}
		assert.Equal(t, 2, deadCount(t, e, topic))

		r = relayCmd(t, e, "dead", "purge", topic, "--id", idOf["invoice-2"])
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, "purged 1, skipped 0, failed 0")
		assert.Equal(t, 1, deadCount(t, e, topic))
	})
}

func TestBadServersAndTopicsFailClearly(t *testing.T) {
	unreachable := []env{
		{name: "nats", flag: []string{"--nats", "nats://127.0.0.1:1"}},
		{name: "redis", flag: []string{"--redis", "redis://127.0.0.1:1/0"}},
	}
	for _, e := range unreachable {
		t.Run("unreachable "+e.name, func(t *testing.T) {
			start := time.Now()
			r := relayCmd(t, e, "stats")
			assert.Equal(t, exitFailed, r.code)
			assert.Contains(t, r.stderr, "127.0.0.1:1", "the address is named")
			assert.Less(t, time.Since(start), 6*time.Second, "fails within the 5 s timeout")
		})
	}
	t.Run("no server", func(t *testing.T) {
		r := relayCmd(t, env{}, "stats")
		assert.Equal(t, exitUsage, r.code)
		assert.Contains(t, r.stderr, "--nats URL or --redis URL")
	})
	eachBackend(t, func(t *testing.T, e env) {
		r := relayCmd(t, e, "stats", "no.such.topic")
		assert.Equal(t, exitFailed, r.code)
		assert.Contains(t, r.stderr, `unknown topic "no.such.topic"`)
		r = relayCmd(t, e, "dead", "ls", "no.such.topic")
		assert.Equal(t, exitFailed, r.code)
		assert.Contains(t, r.stderr, "unknown topic")
		r = relayCmd(t, e, "dead", "ls", "t", "--reason", "(")
		assert.Equal(t, exitUsage, r.code, "invalid --reason")
	})
	t.Run("a Redis key that is not a stream", func(t *testing.T) {
		srv := redistest.Start(t)
		rc := redistest.Client(t, srv)
		key := pubsubtest.NewTopic(t)
		require.NoError(t, rc.Set(t.Context(), key, "not a stream", 0).Err())
		e := env{flag: []string{"--redis", srv.URL()}}
		r := relayCmd(t, e, "stats", key)
		assert.Equal(t, exitFailed, r.code)
		assert.Contains(t, r.stderr, "not a relay stream")
		r = relayCmd(t, e, "stats")
		assert.Equal(t, 0, r.code, "stats of every topic skips the foreign key: %s", r.stderr)
		assert.NotContains(t, r.stdout, key)
	})
}

// stats --watch redraws until Ctrl-C, which ends it with status 0.
func TestStatsWatchRefreshesUntilCtrlC(t *testing.T) {
	e := redisEnv(t)
	topic := pubsubtest.NewTopic(t)
	publishN(t, e.broker(t), topic, "m", 1)
	cmd := exec.Command(bin, append(append([]string{}, e.flag...), "stats", topic, "--watch", "100ms")...)
	cmd.Env = append(os.Environ(), "NATS_URL=", "REDIS_URL=")
	var out testkit.Buffer
	cmd.Stdout = &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // a test that fails early leaves no process behind
	require.Eventually(t, func() bool { return strings.Count(out.String(), "every 100ms") >= 3 }, 20*time.Second, 20*time.Millisecond,
		"three refreshes; output: %s", out.String())
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	require.NoError(t, testkit.WaitExit(t, cmd, exitWait, "stats --watch after Ctrl-C"), "--watch ends with status 0 on Ctrl-C")
	assert.Contains(t, out.String(), topic)
}

func TestHelpHasExamplesOnEveryCommand(t *testing.T) {
	for _, args := range [][]string{{}, {"stats"}, {"dead", "ls"}, {"dead", "show"}, {"dead", "redrive"}, {"dead", "purge"}, {"tail"}} {
		r := relayCmd(t, env{}, append(args, "--help")...)
		assert.Equal(t, 0, r.code, "%v --help", args)
		assert.Contains(t, r.stdout, "Examples:", "%v --help", args)
	}
}

// A bulk redrive of 1,000 dead letters back to their source topic, stopped
// by Ctrl-C, then killed with SIGKILL, then run to the end, puts every one
// back on the source topic at least once, where its consumer now accepts it,
// loses none, and leaves the dead-letter topic empty.
func TestRedriveInterruptedAndKilledLosesNothing(t *testing.T) {
	const n = 1000
	eachBackend(t, func(t *testing.T, e env) {
		topic := pubsubtest.NewTopic(t)
		got := map[string]int{}
		var (
			mu   sync.Mutex
			heal atomic.Bool
		)
		b := e.broker(t)
		require.NoError(t, b.Subscribe(topic, func(p []byte) error {
			if !heal.Load() {
				return relay.ErrPermanent
			}
			mu.Lock()
			got[string(p)]++
			mu.Unlock()
			return nil
		}))
		publishN(t, b, topic, "m", n)
		require.Eventually(t, func() bool { return deadCount(t, e, topic) == n }, time.Minute, 100*time.Millisecond)
		// Every original was refused and acknowledged: from here on the
		// consumer sees only redriven messages, and takes them.
		heal.Store(true)

		args := []string{"dead", "redrive", topic, "--all", "--rate", "400"}
		code, stderr := runUntil(t, e, args, 300, syscall.SIGINT)
		assert.Equal(t, exitInterrupted, code, "Ctrl-C: %s", stderr)
		assert.Contains(t, stderr, "stopped by Ctrl-C after")
		code, stderr = runUntil(t, e, args, 200, syscall.SIGKILL)
		assert.Equal(t, -1, code, "SIGKILL: %s", stderr)
		r := relayCmd(t, e, args[:len(args)-2]...) // the rest, at full speed
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, "failed 0")

		assert.Equal(t, 0, deadCount(t, e, topic), "dead letters left")
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) == n
		}, 30*time.Second, 50*time.Millisecond, "distinct messages back on the source topic")
		mu.Lock()
		dup := 0
		for i := range n {
			assert.Positive(t, got[fmt.Sprintf("m-%d", i)], "m-%d back on %s", i, topic)
		}
		for _, c := range got {
			dup += c - 1
		}
		mu.Unlock()
		t.Logf("%s: %d redriven to the source topic, %d duplicates", e.name, n, dup)
		assert.LessOrEqual(t, dup, 2, "at most the message in hand at the kill comes twice")
	})
}

// runUntil starts a bulk command, waits until its progress lines on stderr
// say that at least done dead letters are done, sends sig and returns its
// exit code (-1 when killed by the signal) and stderr.
func runUntil(t *testing.T, e env, args []string, done int, sig syscall.Signal) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, append(append([]string{}, e.flag...), args...)...)
	cmd.Env = append(os.Environ(), "NATS_URL=", "REDIS_URL=")
	pipe, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var all testkit.Buffer // read by the failure messages while the scanner writes
	seen, scanned := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pipe)
		once := sync.OnceFunc(func() { close(seen) })
		for sc.Scan() {
			_, _ = all.Write([]byte(sc.Text() + "\n"))
			var n, total int
			if _, err := fmt.Sscanf(sc.Text(), "redrive: %d/%d", &n, &total); err == nil && n >= done {
				once()
			}
		}
		once()
	}()
	select {
	case <-seen:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("not %d done within a minute; stderr: %s", done, all.String())
	}
	require.NoError(t, cmd.Process.Signal(sig))
	// The whole of stderr is read before Wait, which closes the pipe and
	// would drop what is left in it (the closing summary line).
	testkit.Closed(t, scanned, exitWait, "the end of relay's stderr after %v (it did not exit)", sig)
	err = testkit.WaitExit(t, cmd, exitWait, "relay %v after %v", args, sig)
	code := cmd.ProcessState.ExitCode()
	if err != nil && code == 0 {
		t.Fatalf("wait: %v", err)
	}
	return code, all.String()
}

// tail prints what is published while it runs, takes nothing from any
// group, and leaves no consumer behind.
func TestTailPrintsMessagesAndLeavesNoConsumer(t *testing.T) {
	eachBackend(t, func(t *testing.T, e env) {
		topic := pubsubtest.NewTopic(t)
		b := e.broker(t)
		publishN(t, b, topic, "before", 1) // the topic exists
		before := e.consumers(t, topic)

		cmd := exec.Command(bin, append(append([]string{}, e.flag...), "tail", topic)...)
		cmd.Env = append(os.Environ(), "NATS_URL=", "REDIS_URL=")
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		var errOut testkit.Buffer // read by a failure message while the process writes
		cmd.Stderr = &errOut
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill() }) // a test that fails early leaves no process behind
		lines := make(chan string, 64)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// tail follows from when it starts: publish until a message shows.
		deadline := time.After(20 * time.Second)
		var first string
		for i := 0; first == ""; i++ {
			require.NoError(t, b.Publish(t.Context(), topic, fmt.Appendf(nil, "probe-%d", i)))
			select {
			case first = <-lines:
			case <-time.After(200 * time.Millisecond):
			case <-deadline:
				_ = cmd.Process.Kill()
				t.Fatalf("tail printed nothing; stderr: %s", errOut.String())
			}
		}
		assert.Contains(t, first, "probe-")
		assert.NotContains(t, first, "before", "tail starts at the end of the topic")
		require.NoError(t, b.Publish(t.Context(), topic, []byte("after the probe")))
		deadline = time.After(20 * time.Second)
		for printed := false; !printed; {
			select {
			case l, open := <-lines:
				printed = !open || strings.Contains(l, "after the probe")
			case <-deadline:
				_ = cmd.Process.Kill()
				t.Fatal("tail did not print the message published after the probe within 20s")
			}
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
		err = testkit.WaitExit(t, cmd, exitWait, "tail after Ctrl-C")
		require.NoError(t, err, "tail ends with status 0 on Ctrl-C; stderr: %s", errOut.String())
		require.Eventually(t, func() bool { return e.consumers(t, topic) == before }, 10*time.Second, 50*time.Millisecond,
			"tail left a consumer behind")
	})
}

// A dead-letter topic that two topics share (WithDeadLetterTopic): --source-topic
// keeps one topic's dead letters, in ls and in redrive.
func TestDeadLettersOfASharedTopicAreChosenBySource(t *testing.T) {
	eachBackend(t, func(t *testing.T, e env) {
		a, bTopic := pubsubtest.NewTopic(t), pubsubtest.NewTopic(t)
		shared := a + ".shared"
		dlt := func(string) string { return shared }
		var opt any = redisstreams.WithDeadLetterTopic(dlt)
		if e.name == "nats" {
			opt = natsjs.WithDeadLetterTopic(dlt)
		}
		br := e.broker(t, opt)
		fail := func(p []byte) error { return fmt.Errorf("refused %s: %w", p, relay.ErrPermanent) }
		require.NoError(t, br.Subscribe(a, fail))
		require.NoError(t, br.Subscribe(bTopic, fail))
		publishN(t, br, a, "a", 2)
		publishN(t, br, bTopic, "b", 3)
		// ls lists the shared topic's dead letters; ok is false while the
		// command fails (the shared key is written by the first dead letter,
		// so before it an unknown topic is the right answer).
		ls := func(args ...string) (dls []deadLetterJSON, r result) {
			r = relayCmd(t, e, append([]string{"dead", "ls", a, "--dead-letter-topic", shared, "--json"}, args...)...)
			if r.code == 0 {
				assert.NoError(t, json.Unmarshal([]byte(r.stdout), &dls))
			}
			return dls, r
		}
		count := func(args ...string) int {
			dls, r := ls(args...)
			require.Equal(t, 0, r.code, r.stderr)
			for _, dl := range dls {
				assert.Equal(t, args[1], dl.SourceTopic, "a dead letter of another source listed")
			}
			return len(dls)
		}
		// The poll runs in testify's own goroutine, where a require would
		// end the test: it only reads.
		require.Eventually(t, func() bool {
			dls, r := ls()
			return r.code == 0 && len(dls) == 5
		}, 20*time.Second, 20*time.Millisecond)
		assert.Equal(t, 3, count("--source-topic", bTopic))
		assert.Equal(t, 2, count("--source-topic", a))

		r := relayCmd(t, e, "dead", "redrive", a, "--dead-letter-topic", shared, "--source-topic", bTopic, "--dry-run")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, 3, strings.Count(r.stdout, "would redrive"), r.stdout)
	})
}

// --replica-acks: a redrive whose copy no replica took keeps its dead letter
// and fails (a Redis without replicas answers WAIT with 0); on NATS the flag
// is a usage error, since a stream's own config sets its replicas.
func TestRedriveWithReplicaAcksKeepsWhatIsNotReplicated(t *testing.T) {
	e := redisEnv(t)
	topic := pubsubtest.NewTopic(t)
	b := e.broker(t)
	require.NoError(t, b.Subscribe(topic, func(p []byte) error {
		return fmt.Errorf("refused %s: %w", p, relay.ErrPermanent)
	}))
	publishN(t, b, topic, "unreplicated", 1)
	require.Eventually(t, func() bool { return deadCount(t, e, topic) == 1 }, 20*time.Second, 20*time.Millisecond)
	require.NoError(t, b.Close()) // the copy stays on the topic, not dead-lettered again

	r := relayCmd(t, e, "--replica-acks", "1", "--timeout", "400ms", "dead", "redrive", topic, "--all")
	assert.Equal(t, 1, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	assert.Contains(t, r.stdout+r.stderr, "replica", "the failure names the replicas")
	assert.Equal(t, 1, deadCount(t, e, topic), "the dead letter stays when its copy was not replicated")

	r = relayCmd(t, natsEnv(t), "--replica-acks", "1", "dead", "ls", topic)
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "--replica-acks is for Redis")
}

// clusterEnv is a Redis Cluster of the test kit (three masters, a replica
// each), read by the command through --redis-cluster.
func clusterEnv(t *testing.T) env {
	c := redistest.StartCluster(t)
	rc := c.Client(t)
	addrs := c.Addrs()
	u := "redis://" + addrs[0]
	for i, a := range addrs[1:] {
		u += map[bool]string{true: "?", false: "&"}[i == 0] + "addr=" + a
	}
	return env{
		name:   "redis-cluster",
		flag:   []string{"--redis-cluster", u},
		broker: redisBroker(rc),
	}
}

// On a Redis Cluster (--redis-cluster): the dead letters of a topic are
// listed and redriven back to it, and stats finds the topic, whichever
// masters its keys are on.
func TestDeadLettersOnARedisClusterAreRedriven(t *testing.T) {
	e := clusterEnv(t)
	topic, heal, got := threeDeadInvoices(t, e)

	r := relayCmd(t, e, "stats", topic, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, topic)

	heal.Store(true)
	r = relayCmd(t, e, "dead", "redrive", topic, "--all")
	require.Equal(t, 0, r.code, r.stderr)
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case p := <-got:
			seen[p] = true
		case <-time.After(20 * time.Second):
			t.Fatalf("redriven: %v, want 3 invoices", seen)
		}
	}
	assert.Equal(t, 0, deadCount(t, e, topic))

	r = relayCmd(t, e, "--redis", "redis://127.0.0.1:1", "stats")
	assert.Equal(t, 2, r.code, "two Redis flags at once: %s", r.stderr)
}

// Behind Sentinel (--redis-sentinel): the command finds the master through
// the sentinel and lists its dead letters.
func TestDeadLettersBehindSentinelAreListed(t *testing.T) {
	srv := redistest.Start(t)
	s := redistest.StartSentinel(t, srv)
	b, err := redisstreams.NewBroker(redistest.Client(t, srv), redisstreams.WithLogger(quiet))
	require.NoError(t, err)
	t.Cleanup(func() { _ = testkit.CloseWithin(t, exitWait, b.Close, "broker Close at cleanup") })
	e := env{name: "redis-sentinel", flag: []string{"--redis-sentinel", s.URL()}}
	topic := pubsubtest.NewTopic(t)
	require.NoError(t, b.Subscribe(topic, func(p []byte) error { return relay.Permanent(fmt.Errorf("refused %s", p)) }))
	publishN(t, b, topic, "order", 2)
	require.Eventually(t, func() bool { return deadCount(t, e, topic) == 2 }, 20*time.Second, 20*time.Millisecond)

	r := relayCmd(t, env{flag: []string{"--redis-sentinel", "redis://" + s.Addr()}}, "stats")
	assert.Equal(t, 2, r.code, "a sentinel URL without master_name: %s", r.stderr)
	assert.Contains(t, r.stderr, "master_name")
}

// consumer delete: refused (exit 1, nothing removed) while the consumer has
// a message pending, done once it has none.
func TestConsumerDeleteOnlyWhenNothingIsPending(t *testing.T) {
	eachBackend(t, func(t *testing.T, e env) {
		topic := pubsubtest.NewTopic(t)
		pub := e.broker(t)
		billing := e.broker(t, append(e.single(), e.group("billing"))...)
		release := make(chan struct{})
		free := sync.OnceFunc(func() { close(release) })
		t.Cleanup(free)
		var handled atomic.Int32
		require.NoError(t, billing.Subscribe(topic, func([]byte) error {
			<-release
			handled.Add(1)
			return nil
		}))
		publishN(t, pub, topic, "invoice", 1)
		group := func() (g groupJSON, ok bool) {
			r := relayCmd(t, e, "stats", topic, "--json")
			var got []topicJSON
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &got) != nil || len(got) != 1 {
				return g, false
			}
			for _, g := range got[0].Groups {
				if g.Group == "billing" {
					return g, true
				}
			}
			return g, false
		}
		var name string
		require.Eventually(t, func() bool {
			g, ok := group()
			if ok && g.Pending == 1 && len(g.Consumers) == 1 {
				name = g.Consumers[0].Name
			}
			return name != ""
		}, 10*time.Second, 20*time.Millisecond, "a pending message in group billing")

		r := relayCmd(t, e, "consumer", "delete", topic, "billing", name)
		assert.Equal(t, 1, r.code, "delete with a message pending: %s", r.stdout)
		assert.Contains(t, r.stderr, "pending")
		g, ok := group()
		require.True(t, ok, "the group is still there")
		assert.EqualValues(t, 1, g.Pending)

		free()
		require.Eventually(t, func() bool { g, ok := group(); return handled.Load() == 1 && ok && g.Pending == 0 },
			10*time.Second, 20*time.Millisecond)
		if e.name == "nats" {
			// The durable outlives its subscription; on Redis Close
			// removes the broker's own consumer, so it is deleted while
			// its subscription runs (and made again by its next read).
			require.NoError(t, billing.Close())
		}
		r = relayCmd(t, e, "consumer", "delete", topic, "billing", name)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, "deleted consumer "+name)
		if g, ok := group(); ok && e.name == "nats" {
			assert.Empty(t, g.Consumers, "the durable is gone")
		}

		r = relayCmd(t, e, "consumer", "delete", topic, "billing")
		assert.Equal(t, 2, r.code, "two arguments: %s", r.stderr)
	})
}

// threeDeadInvoices subscribes to a new topic a handler that refuses every
// invoice for good until heal is set, then sends what it handles to got,
// and waits until the topic has the three dead letters of its invoices.
func threeDeadInvoices(t *testing.T, e env) (topic string, heal *atomic.Bool, got chan string) {
	t.Helper()
	topic, heal, got = pubsubtest.NewTopic(t), new(atomic.Bool), make(chan string, 16)
	b := e.broker(t)
	require.NoError(t, b.Subscribe(topic, func(p []byte) error {
		if heal.Load() {
			got <- string(p)
			return nil
		}
		return fmt.Errorf("no customer for %s: %w", p, relay.ErrPermanent)
	}))
	publishN(t, b, topic, "invoice", 3)
	require.Eventually(t, func() bool { return deadCount(t, e, topic) == 3 }, 20*time.Second, 20*time.Millisecond)
	return topic, heal, got
}
