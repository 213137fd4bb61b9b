package redistest

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
)

// SkipEnv names the environment variable that, set to "1", lets a package
// pass whose Redis tests [Main] found skipped for want of a server: without
// it such a package fails, so that go test's "ok" never hides them.
const SkipEnv = "RELAY_SKIP_REDIS"

// serverSkips and clusterSkips count the tests of this process that [Start]
// and [StartCluster] skipped for want of a Redis server.
var serverSkips, clusterSkips atomic.Int64

// Main wraps a test binary's m for want of a Redis server, outside CI=true
// (where a missing server already fails the tests):
//
//   - without redis-server on PATH it runs the tests with the examples left
//     out (-test.skip gains "^Example"): an example cannot skip, and one that
//     starts a server with [Run] could only fail the package before a line
//     is printed;
//   - after the tests, when any test skipped for want of a server or any
//     example was left out, it prints one line to standard error: what is
//     missing, how many tests skipped, how many examples did not run, and how
//     to provide a server;
//   - it then returns 1 unless RELAY_SKIP_REDIS=1 ([SkipEnv]): in package-list
//     mode (go test ./...) go test shows a package's output only when the
//     package fails, and prints a bare "ok" for one whose every test skipped.
//
// With -test.list it only runs m. Use it in TestMain, with goleak or alone:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }
func Main(m *testing.M) interface{ Run() int } { return mainM{m} }

type mainM struct{ m *testing.M }

func (w mainM) Run() int {
	if os.Getenv("CI") == "true" {
		return w.m.Run()
	}
	if !flag.Parsed() {
		flag.Parse()
	}
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		return w.m.Run()
	}
	var r report
	if _, err := exec.LookPath("redis-server"); err != nil {
		r.examples = leaveOutExamples(w.m)
	}
	code := w.m.Run()
	r.server, r.cluster = serverSkips.Load(), clusterSkips.Load()
	r.pass = os.Getenv(SkipEnv) == "1"
	r.redisURL = os.Getenv("REDIS_URL") != ""
	_, err := exec.LookPath("redis-server")
	r.redisServer = err == nil
	_, err = exec.LookPath("redis-cli")
	r.redisCLI = err == nil
	if !r.write(os.Stderr) || r.pass || code != 0 {
		return code
	}
	return 1
}

// leaveOutExamples adds "^Example" to -test.skip and returns how many of m's
// examples -test.run and -test.skip would have run, or -1 when m does not
// say what its examples are.
func leaveOutExamples(m *testing.M) int {
	run, skip := flagValue("test.run"), flagValue("test.skip")
	names, ok := exampleNames(m)
	n := 0
	for _, name := range names {
		if selected(name, run, skip) {
			n++
		}
	}
	if ok && n == 0 {
		return 0
	}
	if !ok {
		n = -1
	}
	pattern := "^Example"
	if skip != "" {
		// A top-level "|" separates alternatives of -test.skip whatever
		// they hold, as it does for -test.run.
		pattern = skip + "|" + pattern
	}
	if err := flag.Set("test.skip", pattern); err != nil {
		panic("redistest: " + err.Error())
	}
	return n
}

func flagValue(name string) string {
	if f := flag.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// exampleNames returns the names of m's examples. testing.M does not export
// them; ok is false when its field is not where Go 1.26 keeps it.
func exampleNames(m *testing.M) (names []string, ok bool) {
	v := reflect.ValueOf(m).Elem().FieldByName("examples")
	if !v.IsValid() || v.Kind() != reflect.Slice {
		return nil, false
	}
	for i := range v.Len() {
		n := v.Index(i).FieldByName("Name")
		if !n.IsValid() || n.Kind() != reflect.String {
			return nil, false
		}
		names = append(names, n.String())
	}
	return names, true
}

// selected reports whether the testing package would run the example name
// under -test.run run and -test.skip skip: run's first element of some
// alternative matches name (or run is empty), and no single-element
// alternative of skip does.
func selected(name, run, skip string) bool {
	if run != "" {
		ok := false
		for _, alt := range splitPattern(run) {
			if matches(alt[0], name) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if skip != "" {
		for _, alt := range splitPattern(skip) {
			if len(alt) == 1 && matches(alt[0], name) {
				return false
			}
		}
	}
	return true
}

// matches is regexp.MatchString, true on a bad pattern (testing rejects it
// anyway).
func matches(pattern, s string) bool {
	ok, err := regexp.MatchString(pattern, s)
	return ok || err != nil
}

// splitPattern splits a -test.run or -test.skip pattern as the testing
// package does: into alternatives at each "|", and each into the elements of
// a test name at each "/", neither within brackets or parentheses.
func splitPattern(s string) [][]string {
	var alts [][]string
	var elems []string
	brackets, parens := 0, 0
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			brackets++
		case ']':
			if brackets > 0 {
				brackets--
			}
		case '(':
			if brackets == 0 {
				parens++
			}
		case ')':
			if brackets == 0 {
				parens--
			}
		case '\\':
			i++
		case '/', '|':
			if brackets == 0 && parens == 0 {
				elems = append(elems, s[start:i])
				start = i + 1
				if s[i] == '|' {
					alts = append(alts, elems)
					elems = nil
				}
			}
		}
	}
	return append(alts, append(elems, s[min(start, len(s)):]))
}

// report is what [Main] prints after the tests.
type report struct {
	server, cluster int64 // tests skipped by Start and by StartCluster
	examples        int   // examples left out; -1: some, how many unknown
	pass            bool  // RELAY_SKIP_REDIS=1
	// What was there after the tests.
	redisURL, redisServer, redisCLI bool
}

// write writes r's line to w and reports whether there was one: none when
// no test skipped and no example was left out.
func (r report) write(w io.Writer) bool {
	if r.server == 0 && r.cluster == 0 && r.examples == 0 {
		return false
	}
	var missing []string
	if r.server > 0 && !r.redisURL {
		missing = append(missing, "REDIS_URL is unset")
	}
	if !r.redisServer {
		missing = append(missing, "redis-server is not on PATH")
	}
	if r.cluster > 0 && !r.redisCLI {
		missing = append(missing, "redis-cli is not on PATH")
	}
	if r.server > 0 {
		missing = append(missing, "no Docker engine answers")
	}
	var what []string
	if n := r.server + r.cluster; n > 0 {
		what = append(what, fmt.Sprintf("%d test(s) skipped", n))
	}
	switch {
	case r.examples > 0:
		what = append(what, fmt.Sprintf("%d example(s) not run", r.examples))
	case r.examples < 0:
		what = append(what, "the examples not run")
	}
	verdict, end := "FAIL", "set "+SkipEnv+"=1 to let this pass"
	if r.pass {
		verdict, end = "SKIPPED", SkipEnv+"=1 lets this pass"
	}
	subject := "no Redis server"
	if r.server == 0 {
		subject = "not every Redis test ran"
	}
	fmt.Fprintf(w, "redistest: %s: %s (%s): %s. Install redis-server (apt-get install redis-server, "+
		"brew install redis) or set REDIS_URL (e.g. redis://127.0.0.1:6379/0; examples and cluster tests need "+
		"redis-server and redis-cli on PATH); %s\n",
		verdict, subject, strings.Join(missing, ", "), strings.Join(what, ", "), end)
	return true
}

// skip skips t for want of a server, counting it for [Main] in n when t
// did skip: a testing.TB of a test's own that records the Skip instead (a
// test of this package's helpers) is not a test skipped.
func skip(t testing.TB, n *atomic.Int64, msg string) {
	defer func() {
		if t.Skipped() {
			n.Add(1)
		}
	}()
	t.Skip(msg)
}
