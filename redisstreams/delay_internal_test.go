package redisstreams

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// delayedKeyTopics are topics of every shape the hash-tag rule treats
// differently.
var delayedKeyTopics = []string{
	"orders", "orders.placed", "café.commandes", // no brace
	"orders{eu}", "{eu}orders", "a{b}c{d}", // a hash tag
	"a{b", "x{y{z", // '{' without '}': hashed whole
	"a}b", "x{}y", "}{", "x{}y{z}", "{}", // '}' without a tag
}

func TestCRC16IsTheClusterSpecsChecksum(t *testing.T) {
	// The cluster specification's test vector.
	if got := crc16("123456789"); got != 0x31C3 {
		t.Fatalf("crc16(\"123456789\") = %#x, want 0x31c3", got)
	}
}

func TestDelayedKeySharesTheStreamsSlot(t *testing.T) {
	for _, topic := range delayedKeyTopics {
		key := delayedKey(topic)
		if got, want := keySlot(key), keySlot(streamKey(topic)); got != want {
			t.Errorf("topic %q: delayed key %q in slot %d, stream key in slot %d", topic, key, got, want)
		}
		if key == streamKey(topic) {
			t.Errorf("topic %q: delayed key is the stream key", topic)
		}
	}
	for _, slot := range []uint16{0, 1, 8191, 12182, 16383} {
		if got := keySlot("{" + slotTag(slot) + "}"); got != slot {
			t.Fatalf("slotTag(%d) hashes to %d", slot, got)
		}
	}
}

// TestDelayedKeySlotOnACluster asks a cluster-enabled redis-server (CLUSTER
// KEYSLOT) for the slots, so that the rule above is Redis' and not only ours.
func TestDelayedKeySlotOnACluster(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server not found under CI=true: %v", err)
		}
		t.Skipf("redis-server not on PATH: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
		"--cluster-config-file", dir+"/nodes.conf", "--dir", dir, "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rc := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { _ = rc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for rc.Ping(ctx).Err() != nil {
		if ctx.Err() != nil {
			t.Fatalf("cluster-enabled redis-server did not answer: %v", ctx.Err())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, topic := range delayedKeyTopics {
		stream, err := rc.ClusterKeySlot(ctx, streamKey(topic)).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %q: %v", topic, err)
		}
		set, err := rc.ClusterKeySlot(ctx, delayedKey(topic)).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %q: %v", delayedKey(topic), err)
		}
		if set != stream || int64(keySlot(topic)) != stream {
			t.Errorf("topic %q: Redis puts the stream in slot %d and %q in slot %d; ours says %d", topic, stream, delayedKey(topic), set, keySlot(topic))
		}
	}
}
