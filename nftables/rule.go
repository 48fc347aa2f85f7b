package nftables

import (
	"bytes"
	"context"
	"fmt"

	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// Attributes of a rule (enum nft_rule_attributes) and of its expressions.
const (
	ruleTable       = 1 // NFTA_RULE_TABLE
	ruleChain       = 2 // NFTA_RULE_CHAIN
	ruleHandle      = 3 // NFTA_RULE_HANDLE
	ruleExpressions = 4 // NFTA_RULE_EXPRESSIONS
	ruleUserdata    = 7 // NFTA_RULE_USERDATA

	listElem = 1 // NFTA_LIST_ELEM
	exprName = 1 // NFTA_EXPR_NAME
	exprData = 2 // NFTA_EXPR_DATA

	// udataComment is the type of a rule's comment in its user data, a
	// list of (type u8, length u8, value) records libnftnl defines
	// (NFTNL_UDATA_RULE_COMMENT).
	udataComment = 0
)

var counterExpr = []byte("counter")

// RuleCounter is the anonymous counter of one rule (a `counter` statement
// without a name).
type RuleCounter struct {
	Family Family
	Table  string
	Chain  string
	// Handle identifies the rule within its table.
	Handle uint64
	// Comment is the rule's comment, "" when it has none.
	Comment string
	// Packets and Bytes are the kernel's cumulative counts of the rule's
	// first counter statement.
	Packets, Bytes uint64
}

// RuleCounters dumps the rules of every table of every family and returns
// the counter of each rule that has an anonymous counter statement, in the
// kernel's order (by family, table and chain, then position). It never
// resets them. Rules without a counter are skipped.
func (c *Conn) RuleCounters(ctx context.Context) ([]RuleCounter, error) {
	var rules []RuleCounter
	var names interner
	err := c.dump(ctx, msgGetRule, msgNewRule, func() {
		rules = make([]RuleCounter, 0, c.lastRules.Load())
		names = make(interner)
	}, func(f Family, attrs []byte) error {
		r, ok, err := decodeRule(f, attrs, names)
		if ok {
			rules = append(rules, r)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dumping nf_tables rules: %w", err)
	}
	c.lastRules.Store(int64(len(rules)))
	return rules, nil
}

// decodeRule decodes one NFT_MSG_NEWRULE message. ok is false for a rule
// without an anonymous counter.
func decodeRule(f Family, b []byte, names interner) (r RuleCounter, ok bool, err error) {
	var table, chain, exprs, udata []byte
	var haveHandle bool
	for len(b) > 0 {
		t, v, rest, ok := nlwire.NextAttr(b)
		if !ok {
			return r, false, attrError(b)
		}
		b = rest
		switch t {
		case ruleTable:
			table = nlwire.CString(v)
		case ruleChain:
			chain = nlwire.CString(v)
		case ruleHandle:
			if r.Handle, err = be64(v); err != nil {
				return r, false, fmt.Errorf("rule handle: %w", err)
			}
			haveHandle = true
		case ruleExpressions:
			exprs = v
		case ruleUserdata:
			udata = v
		}
	}
	if table == nil || chain == nil || !haveHandle {
		return r, false, fmt.Errorf("%w: %s rule without a table, chain or handle", errIncomplete, f)
	}
	counter, err := findCounter(exprs, &r.Packets, &r.Bytes)
	if err != nil {
		return r, false, fmt.Errorf("rule %d of %s table %q chain %q: %w", r.Handle, f, table, chain, err)
	}
	if !counter {
		return r, false, nil
	}
	r.Family, r.Table, r.Chain = f, names.get(table), names.get(chain)
	r.Comment = string(comment(udata))
	return r, true, nil
}

// findCounter looks for the first counter expression in a rule's list of
// expressions and decodes its counts. Other expressions are not decoded.
func findCounter(b []byte, pkts, bytesCount *uint64) (bool, error) {
	for len(b) > 0 {
		t, elem, rest, ok := nlwire.NextAttr(b)
		if !ok {
			return false, attrError(b)
		}
		b = rest
		if t != listElem {
			continue
		}
		var name, data []byte
		for len(elem) > 0 {
			t, v, rest, ok := nlwire.NextAttr(elem)
			if !ok {
				return false, attrError(elem)
			}
			elem = rest
			switch t {
			case exprName:
				name = nlwire.CString(v)
			case exprData:
				data = v
			}
		}
		if !bytes.Equal(name, counterExpr) {
			continue
		}
		if err := decodeCounter(data, pkts, bytesCount); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, nil
}

// comment returns the comment in a rule's user data, nil when there is none
// or the records do not parse.
func comment(b []byte) []byte {
	for len(b) >= 2 {
		typ, l := b[0], int(b[1])
		if len(b) < 2+l {
			return nil
		}
		if typ == udataComment {
			return nlwire.CString(b[2 : 2+l])
		}
		b = b[2+l:]
	}
	return nil
}
