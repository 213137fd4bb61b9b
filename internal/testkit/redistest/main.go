package redistest

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"testing"
)

// skipped counts the tests of this process that [Start] skipped for want of
// a Redis server.
var skipped atomic.Int64

// Main wraps a test binary's m so that, after its tests ran, it prints one
// line to standard error when any test was skipped for want of a Redis
// server: without -v, go test prints only "ok" for a package whose every
// test skipped, and a reader takes that for a pass. Use it in TestMain, with
// goleak or alone:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }
func Main(m *testing.M) interface{ Run() int } { return mainM{m} }

type mainM struct{ m *testing.M }

func (w mainM) Run() int {
	code := w.m.Run()
	reportSkips(os.Stderr, skipped.Load())
	return code
}

// reportSkips writes the line [Main] prints when n tests were skipped.
func reportSkips(w io.Writer, n int64) {
	if n == 0 {
		return
	}
	fmt.Fprintf(w, "redistest: SKIPPED %d test(s): no Redis server. Install redis-server "+
		"(apt-get install redis-server) or set REDIS_URL (e.g. redis://127.0.0.1:6379/0); "+
		"under CI=true these tests fail instead\n", n)
}

// skip skips t for want of a server, counting it for [Main].
func skip(t testing.TB, msg string) {
	skipped.Add(1)
	t.Skip(msg)
}
