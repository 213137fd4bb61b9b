package benchmarks_test

import (
	"os"
	"testing"

	"github.com/go-relay/relay/benchmarks"
)

// env is the servers of the whole test binary, started on first use.
var env = &benchmarks.Env{}

func TestMain(m *testing.M) {
	benchmarks.MaybeRunChild() // the smoke test's peak-rss case re-executes this binary
	code := m.Run()
	env.Close()
	os.Exit(code)
}

// server returns what get returns, skipping the test when the server cannot
// be had, or failing it under CI=true.
func server(tb testing.TB, name string, get func() (string, error)) string {
	tb.Helper()
	s, err := get()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s: %v", name, err)
		}
		tb.Skipf("no %s server (%v); set %s_URL or install it", name, err, name)
	}
	return s
}
