package benchmarks

import (
	"fmt"
	"strconv"
	"strings"
)

// CaseScaling is end-to-end throughput over a grid of publisher goroutines
// and payload sizes, on relay's byte face and on the raw client of each
// system (gochannel, the peer, on the memory system, which has no raw
// client). Each cell is a [Result] whose Case is [ScalingCell] of it.
const CaseScaling = "scaling"

// Default grid of the scaling case.
var (
	DefaultScalePublishers = []int{1, 4, 16, 64, 256}
	DefaultScalePayloads   = []int{16, 1024, 64 << 10}
)

// ScaleConfig sizes the scaling case.
type ScaleConfig struct {
	Publishers []int // publisher goroutines of each column
	Payloads   []int // payload sizes in bytes, one table row group each
	// N is the number of messages of one cell, cut to Bytes/payload for
	// large payloads (at least one per publisher), so that a cell stores
	// at most about Bytes of payload on a server.
	N     int
	Bytes int
}

// cellN is the message count of a cell with payload bytes per message and
// pubs publishers.
func (c ScaleConfig) cellN(payload, pubs int) int {
	n := c.N
	if c.Bytes > 0 && payload > 0 {
		n = min(n, c.Bytes/payload)
	}
	return max(n, pubs, 1)
}

// ScalingCell names the cell of the scaling case with pubs publisher
// goroutines and payload bytes per message: "scaling/16p/1024B".
func ScalingCell(pubs, payload int) string {
	return fmt.Sprintf("%s/%dp/%dB", CaseScaling, pubs, payload)
}

// scales reports whether impl runs the scaling case: relay's byte face and
// the raw client (gochannel on the memory system, its only other library).
func scales(impl Impl) bool {
	return impl.Face == FaceBytes || impl.Face == FaceRaw || (impl.System == "memory" && impl.Face == FacePeer)
}

// scaleFloor is the face relay's byte face is compared with in the scaling
// table of system.
func scaleFloor(system string) string {
	if system == "memory" {
		return FacePeer
	}
	return FaceRaw
}

// scaleFloorName is how the scaling table names the floor of system.
func scaleFloorName(system string) string {
	switch system {
	case "memory":
		return "gochannel"
	case "redis":
		return "raw go-redis"
	case "nats":
		return "raw nats.go"
	}
	return scaleFloor(system)
}

// scalingMarkdown is the scaling section of the report: per system, one row
// per payload and face, one column per publisher count, with the ratio of
// relay to the floor, and, for each payload, where relay's rate peaks.
func scalingMarkdown(sc ScaleConfig, s summary) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	found := false
	for k := range s {
		if strings.HasPrefix(k[1], CaseScaling+"/") {
			found = true
			break
		}
	}
	if !found {
		return ""
	}
	w("## How cost grows: end to end against publishers and payload (messages/s, higher is better)\n\n")
	w("The end-to-end case (a consumer group running, N published, until all are handled and the server holds none ")
	w("unacked) with %s publisher goroutines and payloads of %s. A cell sends %d messages, or %d MiB of payload ", intList(sc.Publishers), payloadList(sc.Payloads), sc.N, sc.Bytes>>20)
	w("if that is fewer messages, and at least one per publisher. relay is its byte face (its default options); the floor is the raw client ")
	w("(gochannel on the memory system), as in the end-to-end case. Ratio: relay ÷ floor, above 1 means relay is faster.\n\n")
	for _, sys := range Systems {
		floor := scaleFloor(sys)
		if !hasScaling(s, sys) {
			continue
		}
		w("### %s: relay-bytes and %s\n\n| payload | face |", sys, scaleFloorName(sys))
		for _, p := range sc.Publishers {
			w(" %d |", p)
		}
		w("\n|---|---|%s\n", strings.Repeat("---:|", len(sc.Publishers)))
		var peaks []string
		for _, size := range sc.Payloads {
			for _, f := range []string{FaceBytes, floor} {
				name := f
				if f != FaceBytes {
					name = scaleFloorName(sys)
				}
				w("| %s | %s |", sizeName(size), name)
				for _, p := range sc.Publishers {
					r, ok := s.get(sys, f, ScalingCell(p, size))
					w(" %s |", num(r.Rate(), ok))
				}
				w("\n")
			}
			w("| %s | relay ÷ floor |", sizeName(size))
			for _, p := range sc.Publishers {
				r, okR := s.get(sys, FaceBytes, ScalingCell(p, size))
				f, okF := s.get(sys, floor, ScalingCell(p, size))
				w(" %s |", ratio(r.Rate(), f.Rate(), okR, okF))
			}
			w("\n")
			if peak, rate, ok := peakOf(s, sys, FaceBytes, sc.Publishers, size); ok {
				fp, frate, _ := peakOf(s, sys, floor, sc.Publishers, size)
				peaks = append(peaks, fmt.Sprintf("%s: relay is fastest with %d (%.0f msg/s), %s with %d (%.0f msg/s)",
					sizeName(size), peak, rate, scaleFloorName(sys), fp, frate))
			}
		}
		w("\n")
		if len(peaks) > 0 {
			w("Fastest publisher count in this run: %s.\n\n", strings.Join(peaks, "; "))
		}
	}
	w("![scaling](scaling.png)\n\n")
	return b.String()
}

// hasScaling reports whether s holds a scaling cell of system.
func hasScaling(s summary, system string) bool {
	for k := range s {
		if strings.HasPrefix(k[0], system+"/") && strings.HasPrefix(k[1], CaseScaling+"/") {
			return true
		}
	}
	return false
}

// peakOf returns the publisher count at which face of system is fastest
// with payload bytes, and that rate.
func peakOf(s summary, system, face string, pubs []int, payload int) (int, float64, bool) {
	best, rate, found := 0, 0.0, false
	for _, p := range pubs {
		if r, ok := s.get(system, face, ScalingCell(p, payload)); ok && r.Rate() > rate {
			best, rate, found = p, r.Rate(), true
		}
	}
	return best, rate, found
}

func sizeName(n int) string {
	switch {
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

func intList(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

func payloadList(sizes []int) string {
	names := make([]string, len(sizes))
	for i, n := range sizes {
		names[i] = sizeName(n)
	}
	return strings.Join(names, ", ")
}
