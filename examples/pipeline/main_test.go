package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-relay/relay/examples/internal/exampleenv"
)

// TestPipelineLosesNothing runs the main job on every backend with a small
// workload and checks the summary it prints, id by id.
func TestPipelineLosesNothing(t *testing.T) {
	tests := []struct {
		name    string
		backend string
	}{
		{name: "memory", backend: "memory"},
		{name: "embedded NATS", backend: "nats"},
		{name: "local redis-server", backend: "redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.backend == exampleenv.Redis {
				exampleenv.RequireRedisServer(t)
			}
			cfg := config{Flags: exampleenv.Flags{Backend: tt.backend}, n: 400, failRate: 0.1, poison: 0.02, concurrency: 4, seed: 7, timeout: time.Minute}
			var out bytes.Buffer
			res, err := run(context.Background(), cfg, &out)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			if res.published != cfg.n || res.lost != 0 {
				t.Fatalf("published %d (want %d), lost %d (want 0)\n%s", res.published, cfg.n, res.lost, out.String())
			}
			for _, want := range []string{"lost (checked by id)", "dead-lettered", "latency p99"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("summary lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func TestGenerateIsReproducible(t *testing.T) {
	cfg := config{n: 1000, failRate: 0.1, poison: 0.05, seed: 3}
	a, b := generate(cfg), generate(cfg)
	var poison, flaky int
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("order %d differs between two runs with one seed: %+v vs %+v", i, a[i], b[i])
		}
		switch a[i].Kind {
		case "poison":
			poison++
		case "flaky":
			flaky++
		}
	}
	if poison < 20 || poison > 80 || flaky < 60 || flaky > 140 {
		t.Fatalf("kinds do not follow the shares: %d poison (want ~50), %d flaky (want ~100)", poison, flaky)
	}
}

func TestConfigValidate(t *testing.T) {
	good := config{n: 1, concurrency: 1, timeout: time.Second}
	tests := []struct {
		name   string
		mutate func(*config)
	}{
		{name: "no orders", mutate: func(c *config) { c.n = 0 }},
		{name: "negative fail rate", mutate: func(c *config) { c.failRate = -0.1 }},
		{name: "shares over one", mutate: func(c *config) { c.failRate, c.poison = 0.6, 0.6 }},
		{name: "no concurrency", mutate: func(c *config) { c.concurrency = 0 }},
		{name: "no timeout", mutate: func(c *config) { c.timeout = 0 }},
	}
	if err := good.validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mutate(&c)
			if c.validate() == nil {
				t.Fatal("invalid config accepted")
			}
		})
	}
}
