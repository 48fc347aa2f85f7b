package exposition

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"

	prom "github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// NewGatherer returns a prometheus.Gatherer that takes a snapshot of src,
// renders it in the text format exactly as a Handler serves it, and parses
// the text back into metric families. Tests compare and lint what /metrics
// serves with it, through client_golang's testutil. Gather fails if the
// rendering left anything out or does not parse.
func NewGatherer(src Source) prom.Gatherer {
	return prom.GathererFunc(func() ([]*dto.MetricFamily, error) {
		var buf bytes.Buffer
		left, err := render(&buf, Text, nil, src.Snapshot(context.Background()))
		if err != nil {
			return nil, err
		}
		if left.n > 0 {
			return nil, fmt.Errorf("%d left out: %w", left.n, left.err)
		}
		return parseText(buf.Bytes())
	})
}

// parseText parses the text format into families sorted by name, the
// metrics of each sorted by label values, as client_golang's registry
// sorts what it gathers. (The Handler serves samples in snapshot order,
// which Prometheus does not mind.)
func parseText(text []byte) ([]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, err
	}
	names := slices.Sorted(maps.Keys(byName))
	out := make([]*dto.MetricFamily, 0, len(names))
	for _, n := range names {
		mf := byName[n]
		slices.SortStableFunc(mf.Metric, func(a, b *dto.Metric) int {
			for i := range min(len(a.Label), len(b.Label)) {
				if c := cmp.Compare(a.Label[i].GetName(), b.Label[i].GetName()); c != 0 {
					return c
				}
				if c := cmp.Compare(a.Label[i].GetValue(), b.Label[i].GetValue()); c != 0 {
					return c
				}
			}
			return cmp.Compare(len(a.Label), len(b.Label))
		})
		out = append(out, mf)
	}
	return out, nil
}
