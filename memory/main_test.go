package memory

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/go-relay/relay/pubsubtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, pubsubtest.WatermillSuiteLeaks()...)
}
