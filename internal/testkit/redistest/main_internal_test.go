package redistest

import "testing"

// selected must agree with the testing package on which examples -test.run
// and -test.skip select, so that Main counts those it leaves out.
func TestSelectedFollowsRunAndSkip(t *testing.T) {
	tests := []struct {
		name, run, skip string
		want            bool
	}{
		{name: "no flags", want: true},
		{name: "run matches", run: "Example", want: true},
		{name: "run does not match", run: "^TestFoo$", want: false},
		{name: "run alternative matches", run: "^TestFoo$|^ExampleRun$", want: true},
		{name: "run alternative in parentheses", run: "^(TestFoo|ExampleRun)$", want: true},
		{name: "run first element matches", run: "ExampleRun/sub", want: true},
		{name: "run matches nothing", run: "^$", want: false},
		{name: "skip matches", skip: "ExampleRun", want: false},
		{name: "skip alternative matches", skip: "TestFoo|ExampleR", want: false},
		{name: "skip of a subtest only", skip: "ExampleRun/sub", want: true},
		{name: "skip in brackets", skip: "[E]xample", want: false},
		{name: "run matches and skip matches", run: "Example", skip: "Run$", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := selected("ExampleRun", tt.run, tt.skip); got != tt.want {
				t.Errorf("selected(ExampleRun, run %q, skip %q) = %v, want %v", tt.run, tt.skip, got, tt.want)
			}
		})
	}
}
