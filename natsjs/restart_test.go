package natsjs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// A server restart while 4 goroutines publish: publishing resumes after it,
// and every message whose Publish returned nil is consumed by a group made
// afterwards. It guards against a Publish that returns nil for a message the
// server did not store, and against publishes that never recover.
func TestRestartWhilePublishingLosesNoAcknowledgedMessage(t *testing.T) {
	natstest.RequireControl(t)
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "restart")
	b := newBroker(t, js, natsjs.WithRequestTimeout(10*time.Second))
	publish(t, b, topic, []byte("warm"))
	var mu sync.Mutex
	acked := map[string]bool{"warm": true}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Sprintf("%d-%d", g, i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := b.Publish(ctx, topic, []byte(p)); err == nil {
					mu.Lock()
					acked[p] = true
					mu.Unlock()
				}
				cancel()
				time.Sleep(2 * time.Millisecond) // pace the publishers
			}
		})
	}
	stopPublishing := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopPublishing()
	eventually(t, func() bool { return count() >= 50 }, "50 publishes acknowledged before the restart")
	require.NoError(t, s.Restart())
	before := count()
	eventually(t, func() bool { return count() >= before+50 }, "publishing resumed after the restart")
	stopPublishing()

	var gmu sync.Mutex
	got := map[string]bool{}
	reader := newBroker(t, js, natsjs.WithGroup("reader"))
	require.NoError(t, reader.Subscribe(topic, func(p []byte) error { gmu.Lock(); got[string(p)] = true; gmu.Unlock(); return nil }))
	missing := func() (n int) {
		mu.Lock()
		defer mu.Unlock()
		gmu.Lock()
		defer gmu.Unlock()
		for p := range acked {
			if !got[p] {
				n++
			}
		}
		return n
	}
	eventually(t, func() bool { return missing() == 0 }, "every acknowledged publish consumed after the restart")
}
