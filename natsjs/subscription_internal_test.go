package natsjs

import (
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestAckInfoReadsWhatMetadataReads guards ackInfo, relay's allocation-free
// reading of a reply subject, against nats.go's Msg.Metadata on the
// subjects of old and new servers and on malformed ones.
func TestAckInfoReadsWhatMetadataReads(t *testing.T) {
	tests := []struct {
		name  string
		reply string
	}{
		{"v1 subject", "$JS.ACK.ORDERS.go-relay.3.1234.77.1700000000000000000.5"},
		{"v2 subject with its random token", "$JS.ACK._.ACCHASH.ORDERS.go-relay.2.99.98.1700000000000000000.0.abc"},
		{"v2 subject without the random token", "$JS.ACK.hub.ACCHASH.ORDERS.go-relay.1.18446744073709551615.1.1700000000000000000.0"},
		{"sequence with a leading zero", "$JS.ACK.ORDERS.go-relay.1.0042.1.1.0"},
		{"sequence zero", "$JS.ACK.ORDERS.go-relay.1.0.1.1.0"},
		{"sequence not a number", "$JS.ACK.ORDERS.go-relay.1.x7.1.1.0"},
		{"empty sequence", "$JS.ACK.ORDERS.go-relay.1..1.1.0"},
		{"sequence past uint64", "$JS.ACK.ORDERS.go-relay.1.123456789012345678901.1.1.0"},
		{"delivered not a number", "$JS.ACK.ORDERS.go-relay.-1.5.1.1.0"},
		{"too few tokens", "$JS.ACK.ORDERS.go-relay.1.5.1.1"},
		{"ten tokens", "$JS.ACK.a.ORDERS.go-relay.1.5.1.1.0"},
		{"not an ack subject", "_INBOX.abc.def.1.5.1.1.0.0"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := &nats.Msg{Reply: tt.reply, Sub: &nats.Subscription{}}
			md, err := msg.Metadata()
			seq, delivered, ok := ackInfo(tt.reply)
			if ok != (err == nil) {
				t.Fatalf("ackInfo ok = %v, Metadata error = %v", ok, err)
			}
			if !ok {
				return
			}
			if want := strconv.FormatUint(md.Sequence.Stream, 10); seq != want {
				t.Errorf("seq = %q, Metadata's stream sequence prints %q", seq, want)
			}
			if delivered != md.NumDelivered {
				t.Errorf("delivered = %d, Metadata's = %d", delivered, md.NumDelivered)
			}
		})
	}
}

// TestAckInfoAllocatesNothing guards the reason ackInfo exists.
func TestAckInfoAllocatesNothing(t *testing.T) {
	reply := "$JS.ACK._.ACCHASH.ORDERS.go-relay.2.99.98.1700000000000000000.0.abc"
	if n := testing.AllocsPerRun(100, func() { _, _, _ = ackInfo(reply) }); n != 0 {
		t.Errorf("ackInfo allocates %v times per call", n)
	}
}
