package bench

// seqTracker accounts for the sequence numbers (1, 2, 3, ...) one subscriber receives on one
// channel. In-order delivery costs O(1) and no memory; gaps are remembered as ranges so a late
// (reordered) message is told apart from a duplicate. It is not safe for concurrent use: each
// connection owns its trackers and touches them from its read goroutine only.
type seqTracker struct {
	next     uint64    // next expected sequence number; 0 means nothing seen yet (== 1)
	gaps     []seqSpan // missing ranges below next, ascending, non-overlapping
	received uint64    // every message seen, duplicates included
	dups     uint64
	reorder  uint64 // messages that filled a gap (arrived after a later one)
}

type seqSpan struct{ lo, hi uint64 } // inclusive

// maxGaps bounds the memory of a tracker under pathological loss; beyond it the oldest gap is
// forgotten, which can only turn a later late arrival into a counted duplicate.
const maxGaps = 1024

// add records seq (>= 1) and reports whether it was a duplicate.
func (t *seqTracker) add(seq uint64) (dup bool) {
	if seq == 0 {
		return false
	}
	t.received++
	if t.next == 0 {
		t.next = 1
	}
	switch {
	case seq == t.next:
		t.next++
	case seq > t.next:
		t.gaps = append(t.gaps, seqSpan{t.next, seq - 1})
		if len(t.gaps) > maxGaps {
			t.gaps = t.gaps[1:]
		}
		t.next = seq + 1
	default:
		for i := range t.gaps {
			g := &t.gaps[i]
			if seq < g.lo || seq > g.hi {
				continue
			}
			t.reorder++
			switch {
			case g.lo == g.hi:
				t.gaps = append(t.gaps[:i], t.gaps[i+1:]...)
			case seq == g.lo:
				g.lo++
			case seq == g.hi:
				g.hi--
			default:
				rest := seqSpan{seq + 1, g.hi}
				g.hi = seq - 1
				t.gaps = append(t.gaps, seqSpan{})
				copy(t.gaps[i+2:], t.gaps[i+1:])
				t.gaps[i+1] = rest
			}
			return false
		}
		t.dups++
		return true
	}
	return false
}

// distinct is the number of different sequence numbers received.
func (t *seqTracker) distinct() uint64 { return t.received - t.dups }

// lost returns how many of the sequence numbers 1..published were never received.
func (t *seqTracker) lost(published uint64) uint64 {
	d := t.distinct()
	if published <= d {
		return 0
	}
	return published - d
}
