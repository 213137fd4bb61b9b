package memory_test

import (
	"testing"

	"github.com/go-relay/relay/internal/testkit/memharness"
	"github.com/go-relay/relay/pubsubtest"
)

func TestConformanceBroker(t *testing.T) {
	pubsubtest.TestBroker(t, memharness.New(t))
}

func TestConformanceWatermill(t *testing.T) {
	pubsubtest.TestWatermill(t, memharness.New(t))
}

func TestConformanceInspector(t *testing.T) {
	pubsubtest.TestInspector(t, memharness.New(t))
}

func TestConformanceTelemetry(t *testing.T) {
	pubsubtest.TestTelemetry(t, memharness.New(t))
}
