package relay_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/internal/testkit/redistest"
)

// The README's cluster snippets publish on real clusters.
func TestREADMEClusterSnippets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Run("natsCluster", func(t *testing.T) {
		c := natstest.StartCluster(t, 3)
		b, nc, err := natsCluster(strings.Join(c.URLs(), ","))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		defer b.Close()
		if err := b.Publish(ctx, "orders.placed", []byte("o-1")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("redisCluster", func(t *testing.T) {
		c := redistest.StartCluster(t)
		b, rc, err := redisCluster(c.Addrs())
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		defer b.Close()
		if err := b.Publish(ctx, "orders.placed", []byte("o-1")); err != nil {
			t.Fatal(err)
		}
	})
}
