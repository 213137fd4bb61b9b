package benchmarks

import (
	"strings"
	"testing"
	"time"
)

// A scaling cell sends N messages, or Bytes of payload if that is fewer,
// and never fewer messages than publishers.
func TestScaleCellN(t *testing.T) {
	sc := ScaleConfig{N: 20_000, Bytes: 128 << 20}
	for _, tc := range []struct{ payload, pubs, want int }{
		{payload: 16, pubs: 16, want: 20_000},
		{payload: 1024, pubs: 256, want: 20_000},
		{payload: 64 << 10, pubs: 1, want: 2048},
		{payload: 64 << 10, pubs: 4096, want: 4096},
	} {
		if got := sc.cellN(tc.payload, tc.pubs); got != tc.want {
			t.Errorf("cellN(%d B, %d publishers) = %d, want %d", tc.payload, tc.pubs, got, tc.want)
		}
	}
	if got := (ScaleConfig{N: 5}).cellN(1024, 1); got != 5 {
		t.Errorf("cellN without a byte bound = %d, want N (5)", got)
	}
}

// The scaling table shows each cell's rate, the ratio of relay to the
// floor, and where each is fastest, from the medians it is given.
func TestScalingMarkdown(t *testing.T) {
	sc := ScaleConfig{Publishers: []int{1, 4}, Payloads: []int{1024}, N: 1000, Bytes: 1 << 20}
	s := summary{}
	put := func(impl string, pubs int, rate float64) {
		k := [2]string{impl, ScalingCell(pubs, 1024)}
		s[k] = Result{Impl: impl, Case: k[1], Msgs: 1000, Elapsed: time.Duration(1000 / rate * float64(time.Second))}
	}
	put("redis/relay-bytes", 1, 1000)
	put("redis/relay-bytes", 4, 3000)
	put("redis/raw", 1, 2000)
	put("redis/raw", 4, 2000)
	md := scalingMarkdown(sc, s)
	for _, want := range []string{
		"### redis: relay-bytes and raw go-redis",
		"| payload | face | 1 | 4 |",
		"| 1 KiB | relay-bytes | 1000 | 3000 |",
		"| 1 KiB | raw go-redis | 2000 | 2000 |",
		"| 1 KiB | relay ÷ floor | 0.50× | 1.50× |",
		"relay is fastest with 4 (3000 msg/s), raw go-redis with 1 (2000 msg/s)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("scaling table lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "### memory") || strings.Contains(md, "### nats") {
		t.Errorf("scaling table shows a system without results:\n%s", md)
	}
	if got := scalingMarkdown(sc, summary{}); got != "" {
		t.Errorf("scaling table without scaling results = %q, want none", got)
	}
}
