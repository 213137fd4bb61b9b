package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/testkit"

	"github.com/go-relay/relay/examples/internal/exampleenv"
	"github.com/go-relay/relay/natsjs"
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
			if res.meterMismatch {
				t.Errorf("the meter's delivery outcomes differ from the ledger:\n%s", out.String())
			}
			if res.published != cfg.n || res.lost != 0 || res.completed != cfg.n {
				t.Fatalf("published %d, completed %d (want %d each), lost %d (want 0)\n%s",
					res.published, res.completed, cfg.n, res.lost, out.String())
			}
			wants := []string{"lost (checked by id)", "dead-lettered", "latency p99", "completed orders/s", "as the backend counts it", "validator pending 0 lag 0", "validate outcomes (meter)"}
			if tt.backend == exampleenv.NATS {
				wants = append(wants, ".orders.placed (stream pipeline") // issue 17: the streams are named
			}
			for _, want := range wants {
				if !strings.Contains(out.String(), want) {
					t.Errorf("summary lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// TestDelayedOrdersAreLateNeverLost: with -delay-share, a share of the
// orders carry Watermill's delay metadata; each is validated no earlier than
// its due time, and the run still loses nothing (issue 14).
func TestDelayedOrdersAreLateNeverLost(t *testing.T) {
	for _, backend := range []string{exampleenv.Memory, exampleenv.NATS, exampleenv.Redis} {
		t.Run(backend, func(t *testing.T) {
			if backend == exampleenv.Redis {
				exampleenv.RequireRedisServer(t)
			}
			cfg := config{Flags: exampleenv.Flags{Backend: backend}, n: 300, failRate: 0.05, poison: 0.01, concurrency: 4,
				seed: 3, timeout: time.Minute, delayShare: 0.2, delayFor: 1500 * time.Millisecond}
			var out bytes.Buffer
			res, err := run(context.Background(), cfg, &out)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			if res.lost != 0 || res.early != 0 || res.completed != cfg.n {
				t.Fatalf("lost %d, early %d, completed %d of %d\n%s", res.lost, res.early, res.completed, cfg.n, out.String())
			}
			m := regexp.MustCompile(`delayed \(delay\.For\), early\s+(\d+), 0`).FindStringSubmatch(out.String())
			if m == nil || m[1] == "0" {
				t.Fatalf("no delayed orders in the summary:\n%s", out.String())
			}
		})
	}
}

// TestRateCountsCompletedOrders guards issue 17 item 8: an interrupted run
// printed "orders/s 75957" with 16,204 of its orders validated, because the
// rate counted published orders. It must count the orders that reached their
// end.
func TestRateCountsCompletedOrders(t *testing.T) {
	orders := generate(config{n: 100, seed: 1}) // no failures: each order ends billed and audited
	tr := newTracker()
	tr.published(len(orders))
	for _, o := range orders[:10] {
		tr.seen["validated"][o.ID] = 1
		tr.seen["billed"][o.ID] = 1
		tr.seen["audited"][o.ID] = 1
	}
	tr.seen["validated"][orders[10].ID] = 1 // validated, not yet billed: not done
	var out bytes.Buffer
	res := summarize(&out, orders, tr, time.Second, false)
	if res.completed != 10 {
		t.Errorf("completed = %d, want 10", res.completed)
	}
	if m := regexp.MustCompile(`(?m)^  completed orders/s +(\d+)$`).FindStringSubmatch(out.String()); m == nil || m[1] != "10" {
		t.Errorf("want the row \"completed orders/s 10\" (10 orders done in 1s, 100 published):\n%s", out.String())
	}
}

// TestTopicLineNamesNATSStreams guards issue 17 item 8: on NATS a dotted topic
// is held by a stream of another name, which the topic line must give.
func TestTopicLineNamesNATSStreams(t *testing.T) {
	got := topicLine(exampleenv.NATS, "p.orders.placed", "p.orders.placed.dead")
	want := "topics: p.orders.placed (stream " + natsjs.StreamName("p.orders.placed") + "), p.orders.placed.dead (stream " +
		natsjs.StreamName("p.orders.placed.dead") + ")"
	if got != want {
		t.Errorf("topicLine(nats) = %q, want %q", got, want)
	}
	for _, backend := range []string{exampleenv.Memory, exampleenv.Redis} {
		if got := topicLine(backend, "p.orders.placed"); got != "topics: p.orders.placed" {
			t.Errorf("topicLine(%s) = %q, want the topic alone (it is the stream key on Redis)", backend, got)
		}
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

// TestMetricsAddrServesPrometheus runs the main job with -metrics-addr and
// scrapes /metrics while the flow runs: the delivery outcomes are there, in
// Prometheus' text format.
func TestMetricsAddrServesPrometheus(t *testing.T) {
	var out testkit.Buffer
	cfg := config{Flags: exampleenv.Flags{Backend: "memory"}, n: 2000, failRate: 0.1, poison: 0.02, concurrency: 4, seed: 7,
		timeout: time.Minute, metricsAddr: "127.0.0.1:0"}
	done := make(chan error, 1)
	go func() { _, err := run(context.Background(), cfg, &out); done <- err }()
	var url string
	deadline := time.Now().Add(30 * time.Second)
	for url == "" && time.Now().Before(deadline) {
		if m := regexp.MustCompile(`metrics: (http://\S+/metrics)`).FindStringSubmatch(out.String()); m != nil {
			url = m[1]
		}
		time.Sleep(5 * time.Millisecond)
	}
	if url == "" {
		t.Fatalf("no metrics address announced:\n%s", out.String())
	}
	var body string
	for time.Now().Before(deadline) && !strings.Contains(body, "relay_delivery_outcomes") {
		resp, err := http.Get(url)
		if err != nil {
			break // the run ended and the server with it
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		body = string(b)
		time.Sleep(5 * time.Millisecond)
	}
	// run ends by itself within cfg.timeout; the bound adds the Close.
	if err := testkit.Receive(t, done, cfg.timeout+30*time.Second, "the end of run"); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(body, "relay_delivery_outcomes") {
		t.Fatalf("/metrics never showed relay_delivery_outcomes; last scrape:\n%.2000s", body)
	}
}
