package scheduler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// MaxResultBytes bounds a chunk result a node reports.
const MaxResultBytes = 64 << 10

// DecodeResult checks a chunk result reported by a node. err is non-nil
// when raw is not one JSON value or exceeds MaxResultBytes; its text does
// not name the field (callers prefix "result: "). ok reports
// whether it has the aggregatable shape {iterations, meanDps, stdDps,
// minDps, maxDps}: an object with those five members as finite numbers,
// iterations a positive integer, stdDps >= 0 and minDps <= meanDps <=
// maxDps (other members are ignored). Results of any other shape are kept
// as they are and left out of the aggregate.
func DecodeResult(raw []byte) (r ChunkResult, ok bool, err error) {
	if len(raw) > MaxResultBytes {
		return ChunkResult{}, false, fmt.Errorf("larger than %d bytes", MaxResultBytes)
	}
	raw = bytes.Trim(raw, " \t\r\n") // JSON whitespace only
	if len(raw) == 0 || !json.Valid(raw) {
		return ChunkResult{}, false, errors.New("not a JSON value")
	}
	if raw[0] != '{' {
		return ChunkResult{}, false, nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return ChunkResult{}, false, nil
	}
	var nums [5]float64
	for i, k := range [5]string{"iterations", "meanDps", "stdDps", "minDps", "maxDps"} {
		v, found := m[k]
		if !found || json.Unmarshal(v, &nums[i]) != nil || math.IsInf(nums[i], 0) || math.IsNaN(nums[i]) {
			return ChunkResult{}, false, nil
		}
	}
	it := nums[0]
	if it < 1 || it != math.Trunc(it) || it > 1<<53 {
		return ChunkResult{}, false, nil
	}
	r = ChunkResult{Iterations: int64(it), MeanDps: nums[1], StdDps: nums[2], MinDps: nums[3], MaxDps: nums[4]}
	if r.StdDps < 0 || r.MinDps > r.MeanDps || r.MeanDps > r.MaxDps {
		return ChunkResult{}, false, nil
	}
	return r, true, nil
}
