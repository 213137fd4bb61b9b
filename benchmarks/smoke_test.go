package benchmarks_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-relay/relay/benchmarks"
)

// TestSmoke runs the benchmark program's code with a handful of messages for
// every case and implementation, so that it cannot rot: every applicable
// case must succeed and the report must be written.
func TestSmoke(t *testing.T) {
	server(t, "REDIS", env.Redis)
	server(t, "NATS", env.NATS)
	cfg := benchmarks.SmokeConfig()
	cfg.Out = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	results, err := benchmarks.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	got := map[string]bool{}
	for _, r := range results {
		got[r.Impl+" "+r.Case] = true
	}
	for _, impl := range benchmarks.Impls() {
		for _, cas := range benchmarks.AllCases {
			if !applicable(impl, cas) {
				continue
			}
			names := []string{cas}
			if cas == benchmarks.CaseScaling {
				names = nil
				for _, size := range cfg.Scale.Payloads {
					for _, pubs := range cfg.Scale.Publishers {
						names = append(names, benchmarks.ScalingCell(pubs, size))
					}
				}
			}
			for _, name := range names {
				if !got[impl.Name()+" "+name] {
					t.Errorf("no result for %s %s", impl.Name(), name)
				}
			}
		}
	}

	table, err := os.ReadFile(filepath.Join(cfg.Out, "table.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Throughput", "### redis", "| end-to-end |", "## Telemetry cost", "## Latency", "## Delayed delivery", "| system | p50 | p99 | max | sparse p50 | sparse p99 | sparse max |", "## Peak RSS", "chart.png",
		"## How cost grows", "### nats: relay-bytes and raw nats.go", "| 64 KiB | relay ÷ floor |", "scaling.png",
		"**raw-wire** =", "| bytes÷raw-wire |", "| p99 ÷ raw-wire |", "| e2e allocs ÷ raw-wire |", "| redis | raw-wire |", "| nats | raw-wire |"} {
		if !strings.Contains(string(table), want) {
			t.Errorf("table.md lacks %q", want)
		}
	}
	for _, name := range []string{"chart.png", "scaling.png", "results.json"} {
		if fi, err := os.Stat(filepath.Join(cfg.Out, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: missing or empty (%v)", name, err)
		}
	}
}

func applicable(impl benchmarks.Impl, cas string) bool {
	switch cas {
	case benchmarks.CaseBatch100:
		return impl.Face != benchmarks.FaceBytes
	case benchmarks.CaseRouter:
		return impl.Face == benchmarks.FaceWatermill || impl.Face == benchmarks.FacePeer
	case benchmarks.CasePeakRSS:
		return impl.System == "memory"
	case benchmarks.CaseDelayed, benchmarks.CaseSparse, benchmarks.CaseTelemetry:
		return impl.Face == benchmarks.FaceBytes
	case benchmarks.CaseScaling:
		return impl.Face == benchmarks.FaceBytes || impl.Face == benchmarks.FaceRaw ||
			(impl.System == "memory" && impl.Face == benchmarks.FacePeer)
	}
	return true
}

// TestNotApplicable checks that the cases a face cannot run say so, rather
// than fail, so that Run leaves them out of the table.
func TestNotApplicable(t *testing.T) {
	p := benchmarks.SmokeConfig().Params
	for _, tc := range []struct {
		name string
		impl string
		cas  string
	}{
		{name: "batch on the byte face", impl: "memory/relay-bytes", cas: benchmarks.CaseBatch100},
		{name: "router on the byte face", impl: "memory/relay-bytes", cas: benchmarks.CaseRouter},
		{name: "scaling on the Watermill face", impl: "redis/relay-watermill", cas: benchmarks.CaseScaling},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, impl := range benchmarks.Impls() {
				if impl.Name() != tc.impl {
					continue
				}
				_, err := benchmarks.RunCase(context.Background(), env, impl, tc.cas, p)
				if !errors.Is(err, benchmarks.ErrNotApplicable) {
					t.Fatalf("err = %v, want ErrNotApplicable", err)
				}
				return
			}
			t.Fatalf("no implementation %s", tc.impl)
		})
	}
}
