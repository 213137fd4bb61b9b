// Package grafana holds relay-dashboard.json, a Grafana dashboard of relay's
// OpenTelemetry metrics as the Prometheus exporter names them. Import it in
// Grafana (Dashboards, New, Import) and pick the Prometheus data source that
// scrapes your service (for the main job: go run ./examples/pipeline
// -metrics-addr :9464). The test checks that every series and label the
// dashboard queries is one relay exports.
package grafana_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit"
	"github.com/go-relay/relay/memory"
)

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func TestDashboardQueriesWhatRelayExports(t *testing.T) {
	raw, err := os.ReadFile("relay-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("relay-dashboard.json: %v", err)
	}
	families := exported(t)

	series := regexp.MustCompile(`([a-z_]+)\{`)
	by := regexp.MustCompile(`by \(([^)]*)\)`)
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range series.FindAllStringSubmatch(tg.Expr, -1) {
				name := strings.TrimSuffix(m[1], "_bucket")
				labels, ok := families[name]
				if !ok {
					t.Errorf("panel %q queries %s, which relay does not export", p.Title, m[1])
					continue
				}
				for _, b := range by.FindAllStringSubmatch(tg.Expr, -1) {
					for _, l := range strings.Split(b[1], ",") {
						if l = strings.TrimSpace(l); l != "le" && !labels[l] {
							t.Errorf("panel %q groups %s by %q, a label it does not have", p.Title, m[1], l)
						}
					}
				}
			}
		}
	}
}

// exported runs a memory broker through every outcome with a Prometheus
// exporter and returns the metric families it exports, with their labels.
func exported(t *testing.T) map[string]map[string]bool {
	reg := promclient.NewRegistry()
	exporter, err := prometheus.New(prometheus.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	b, err := memory.NewBroker(memory.WithMeterProvider(mp), memory.WithBackoff(time.Millisecond, 2*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// Bounded: a handler blocked on a full done (a delivery more than the
	// three expected) would keep Close waiting for ever.
	t.Cleanup(func() { _ = testkit.CloseWithin(t, 10*time.Second, b.Close, "broker Close at cleanup") })
	done := make(chan struct{}, 3)
	var failed atomic.Bool // handlers run concurrently
	if err := b.Subscribe("orders", func(p []byte) error {
		switch {
		case string(p) == "poison":
			done <- struct{}{}
			return relay.Permanent(errors.New("poison"))
		case failed.CompareAndSwap(false, true):
			return errors.New("once")
		}
		done <- struct{}{}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"flaky", "poison", "ok"} {
		if err := b.Publish(context.Background(), "orders", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the messages were not handled within 10s")
		}
	}
	got := map[string]map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 8 && time.Now().Before(deadline) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			labels := map[string]bool{}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = true
				}
			}
			got[mf.GetName()] = labels
		}
		time.Sleep(10 * time.Millisecond)
	}
	return got
}
