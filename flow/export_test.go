package flow

import "context"

// Round runs one dump of p's live accounting and records it, as the poller
// does between two waits, so that the tests of package flow_test can step
// through dumps.
func Round(ctx context.Context, p *Pipeline) error {
	s := p.cur
	st, err := s.poll.round(ctx)
	s.poll.next(st, err)
	return err
}
