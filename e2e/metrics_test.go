package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// Reading /metrics in tests. A test that asserts a value reads it with
// mustValue or mustSum, which fail the test when the sample is not there: a
// missing metric never reads as 0. value and sum say whether there was one,
// for waiting until a series appears and for tests that assert absence.

// matching returns the samples of family name whose labels include all of
// labels.
func matching(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) []*dto.Metric {
	var out []*dto.Metric
next:
	for _, m := range mfs[name].GetMetric() {
		for k, v := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
					break
				}
			}
			if !found {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// sampleValue returns the value of a counter, gauge or untyped sample.
func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	default:
		return m.GetUntyped().GetValue()
	}
}

// value returns the value of the sample of family name whose labels include
// all of labels, and whether there is exactly one such sample.
func value(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	ms := matching(mfs, name, labels)
	if len(ms) != 1 {
		return 0, false
	}
	return sampleValue(ms[0]), true
}

// mustValue is value for an assertion: it fails the test, saying what the
// family holds, unless exactly one sample matches.
func mustValue(t testing.TB, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	ms := matching(mfs, name, labels)
	if len(ms) != 1 {
		t.Fatalf("/metrics has %d samples of %s%s, want exactly 1; the family holds %s", len(ms), name, labelText(labels), describe(mfs, name))
	}
	return sampleValue(ms[0])
}

// sum returns the sum of the samples of family name whose labels include
// all of labels, and how many there are.
func sum(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, int) {
	ms := matching(mfs, name, labels)
	var s float64
	for _, m := range ms {
		s += sampleValue(m)
	}
	return s, len(ms)
}

// mustSum is sum for an assertion: it fails the test, saying what the family
// holds, when no sample matches.
func mustSum(t testing.TB, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	s, n := sum(mfs, name, labels)
	if n == 0 {
		t.Fatalf("/metrics has no sample of %s%s; the family holds %s", name, labelText(labels), describe(mfs, name))
	}
	return s
}

// labelText writes labels as a selector, for messages.
func labelText(labels map[string]string) string {
	if len(labels) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// describe lists the label sets of family name, for messages.
func describe(mfs map[string]*dto.MetricFamily, name string) string {
	mf, ok := mfs[name]
	if !ok {
		return "nothing: the family is missing"
	}
	var sets []string
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		sets = append(sets, labelText(labels))
		if len(sets) == 20 {
			sets = append(sets, fmt.Sprintf("... (%d in all)", len(mf.GetMetric())))
			break
		}
	}
	return fmt.Sprintf("%d samples: %s", len(mf.GetMetric()), strings.Join(sets, " "))
}
