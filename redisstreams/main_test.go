package redisstreams_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/go-relay/relay/pubsubtest"

	"github.com/go-relay/relay/internal/testkit/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.Main(m), pubsubtest.WatermillSuiteLeaks()...)
}
