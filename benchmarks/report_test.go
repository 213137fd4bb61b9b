package benchmarks

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A report written from an earlier run's results.json (relaybench -from) is
// the report of those results, every throughput case's allocations included.
func TestReportFromResultsJSON(t *testing.T) {
	results := []Result{
		{Impl: "memory/relay-watermill", Case: CaseBatch100, Msgs: 1000, Elapsed: time.Millisecond, Allocs: 6.5, AllocBytes: 1594},
		{Impl: "memory/peer", Case: CaseBatch100, Msgs: 1000, Elapsed: 2 * time.Millisecond, Allocs: 15.1, AllocBytes: 1337},
	}
	cfg := SmokeConfig()
	cfg.Out = t.TempDir()
	if err := WriteReport(cfg, results); err != nil {
		t.Fatal(err)
	}
	got, err := ReadResults(filepath.Join(cfg.Out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, results) {
		t.Fatalf("results.json read back as %+v, want %+v", got, results)
	}
	table, err := os.ReadFile(filepath.Join(cfg.Out, "table.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| memory | relay-watermill | — | — | — | — | 6.5 | 1594 |", "| memory | peer | — | — | — | — | 15.1 | 1337 |"} {
		if !strings.Contains(string(table), want) {
			t.Errorf("table.md lacks the row %q", want)
		}
	}
	if _, err := ReadResults(filepath.Join(cfg.Out, "table.md")); err == nil {
		t.Error("ReadResults accepted a file that is not results.json")
	}
}
