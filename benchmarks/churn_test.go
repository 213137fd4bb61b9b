package benchmarks_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay/benchmarks"
)

// TestStreamChurnOnEnvServer guards issue 17 item 7: the smoke test failed
// now and then with "nats/peer: open: … err_code=10049 error creating store
// for stream". Every session deletes its stream when it closes; when that was
// the account's last stream, nats-server removed the account's streams
// directory in a goroutine, racing with the next session's creation of its
// stream directory under it. Env's server now always holds a stream, so a
// creation right after the deletion of every other stream never fails. The
// race is a matter of scheduling, so this test churns streams the way the
// sessions do; before the fix about one run in two failed here.
func TestStreamChurnOnEnvServer(t *testing.T) {
	url := server(t, "NATS", env.NATS)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	n := 1000
	if testing.Short() {
		n = 100
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range n {
		name := benchmarks.NewTopic(benchmarks.Impl{System: "nats", Face: "churn"}, "t")
		cfg := jetstream.StreamConfig{Name: name, Subjects: []string{name}, Storage: jetstream.FileStorage}
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			t.Fatalf("create stream %d of %d, right after deleting the one before: %v", i+1, n, err)
		}
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Fatalf("delete stream %s: %v", name, err)
		}
	}
}
