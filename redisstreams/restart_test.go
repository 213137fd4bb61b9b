package redisstreams_test

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// 40 messages on a server with an fsync'ed append-only file; the server is
// killed (SIGKILL) while handlers run and started again 500 ms later: every
// message is handled at least once, by the same broker, without help. It
// guards against entries lost with their in-flight acks or reads, and
// against a consumer that does not resume after an outage.
func TestKillWhileHandlersRunLosesNothing(t *testing.T) {
	redistest.RequireControl(t)
	e := newEnv(t, redistest.Config{AppendOnly: true})
	topic := e.topic("kill")
	b := broker(t, e.rc, fast(redisstreams.WithConcurrency(4), redisstreams.WithClaimTimeout(time.Second))...)
	const n = 40
	for i := range n {
		publish(t, b, topic, fmt.Sprint(i))
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	handled := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	require.NoError(t, b.Subscribe(topic, func(p []byte) error {
		time.Sleep(50 * time.Millisecond) // a handler that takes a while
		mu.Lock()
		seen[string(p)] = true
		mu.Unlock()
		return nil
	}))
	eventually(t, 10*time.Second, "no message handled", func() bool { return handled() > 0 })
	require.NoError(t, e.srv.Kill())
	time.Sleep(500 * time.Millisecond) // the outage
	require.NoError(t, e.srv.Start())
	eventually(t, 30*time.Second, "not every message handled after the kill and restart", func() bool { return handled() == n })
	waitRedialsEnded(t)
}

// waitRedialsEnded waits until no goroutine of go-redis' pool is re-dialing:
// after a failed dial the pool retries in the background once a second
// (internal/pool's tryDial) until a dial succeeds, and the leak check at the
// end of the package must not find one that is between two tries.
func waitRedialsEnded(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	eventually(t, 5*time.Second, "go-redis still re-dials in the background", func() bool {
		n := runtime.Stack(buf, true)
		return !bytes.Contains(buf[:n], []byte("pool.(*ConnPool).tryDial"))
	})
}
