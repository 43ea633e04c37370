// Package sim is the Go reference of the example workers' seeded
// Monte-Carlo damage simulation (examples/workers/sim.py and sim.mjs): the
// same algorithm, bit for bit, so tests can compute a job's expected
// result directly from its seeds. examples/workers/README.md describes the
// algorithm.
package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

const (
	gamma = 0x9E3779B97F4A7C15
	// MaxAttacks bounds duration × attacksPerSecond.
	MaxAttacks = 100000
)

// Settings are the simulation's config keys with their defaults.
type Settings struct {
	Duration         float64 `json:"duration"`
	AttacksPerSecond float64 `json:"attacksPerSecond"`
	BaseDamage       float64 `json:"baseDamage"`
	DamageSpread     float64 `json:"damageSpread"`
	HitChance        float64 `json:"hitChance"`
	CritChance       float64 `json:"critChance"`
	CritMultiplier   float64 `json:"critMultiplier"`
	SleepMs          float64 `json:"sleepMs"`
	CrashAt          float64 `json:"crashAt"`
}

// Defaults are the settings of an empty config.
var Defaults = Settings{Duration: 60, AttacksPerSecond: 1, BaseDamage: 100, DamageSpread: 0.1,
	HitChance: 0.95, CritChance: 0.2, CritMultiplier: 2, CrashAt: -1}

// Result is a chunk's result, the workers' output.
type Result struct {
	Iterations int64   `json:"iterations"`
	MeanDps    float64 `json:"meanDps"`
	StdDps     float64 `json:"stdDps"`
	MinDps     float64 `json:"minDps"`
	MaxDps     float64 `json:"maxDps"`
}

func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// rng is splitmix64 seeded per iteration: state = mix(base+(index+1)·γ).
type rng struct{ state uint64 }

func newRng(base uint64, index int64) *rng {
	return &rng{state: mix(base + (uint64(index)+1)*gamma)}
}

func (r *rng) uniform() float64 {
	r.state += gamma
	return float64(mix(r.state)>>11) / 9007199254740992.0
}

// SeedBase is the first 16 hex digits of the config hash as a 64-bit
// number.
func SeedBase(configHash string) (uint64, error) {
	if len(configHash) < 16 {
		return 0, errors.New("configHash must be a hex string of at least 16 characters")
	}
	v, err := strconv.ParseUint(configHash[:16], 16, 64)
	if err != nil {
		return 0, errors.New("configHash must be hex")
	}
	return v, nil
}

// Parse reads a config object over the defaults.
func Parse(config json.RawMessage) (Settings, int64, error) {
	s := Defaults
	if len(config) > 0 && string(config) != "null" {
		if err := json.Unmarshal(config, &s); err != nil {
			return s, 0, fmt.Errorf("config: %w", err)
		}
	}
	if s.Duration <= 0 {
		return s, 0, errors.New("config.duration must be positive")
	}
	attacks := math.Floor(s.Duration * s.AttacksPerSecond)
	if attacks < 1 || attacks > MaxAttacks {
		return s, 0, fmt.Errorf("config.duration * config.attacksPerSecond must give 1..%d attacks", MaxAttacks)
	}
	return s, int64(attacks), nil
}

// IterationDps simulates global iteration index.
func IterationDps(s Settings, attacks int64, base uint64, index int64) float64 {
	r := newRng(base, index)
	total := 0.0
	lo := s.BaseDamage * (1 - s.DamageSpread)
	width := s.BaseDamage * 2 * s.DamageSpread
	for a := int64(0); a < attacks; a++ {
		if r.uniform() < s.HitChance {
			d := lo + width*r.uniform()
			if r.uniform() < s.CritChance {
				d = d * s.CritMultiplier
			}
			total = total + d
		}
	}
	return total / s.Duration
}

// Chunk simulates iterations from seedOffset, as a worker does for one
// chunk.
func Chunk(configHash string, config json.RawMessage, seedOffset, iterations int64) (Result, error) {
	if iterations <= 0 {
		return Result{}, errors.New("iterations must be positive")
	}
	s, attacks, err := Parse(config)
	if err != nil {
		return Result{}, err
	}
	base, err := SeedBase(configHash)
	if err != nil {
		return Result{}, err
	}
	values := make([]float64, iterations)
	for i := range values {
		values[i] = IterationDps(s, attacks, base, seedOffset+int64(i))
	}
	total := 0.0
	for _, v := range values {
		total = total + v
	}
	mean := total / float64(iterations)
	sq := 0.0
	minV, maxV := values[0], values[0]
	for _, v := range values {
		sq = sq + (v-mean)*(v-mean)
		minV, maxV = math.Min(minV, v), math.Max(maxV, v)
	}
	std := 0.0
	if iterations > 1 {
		std = math.Sqrt(sq / float64(iterations-1))
	}
	return Result{Iterations: iterations, MeanDps: mean, StdDps: std, MinDps: minV, MaxDps: maxV}, nil
}

// Aggregate is a job's result as the scheduler reports it (SCHED.md).
type Aggregate struct {
	TotalIterations int64   `json:"totalIterations"`
	MeanDps         float64 `json:"meanDps"`
	StdDps          float64 `json:"stdDps"`
	MinDps          float64 `json:"minDps"`
	MaxDps          float64 `json:"maxDps"`
	ChunksCompleted int     `json:"chunksCompleted"`
}

// ChunkSize is the scheduler's default chunk size: chunk i has seedOffset
// i·ChunkSize.
const ChunkSize = 1000

// Job computes a job's aggregate directly from the seeds: every iteration
// 0..iterations-1 is simulated and the mean, sample standard deviation,
// min and max are taken over all of them at once (not by combining chunk
// results, as the scheduler does), so it checks the scheduler's pooling
// too. The pooled figures agree with these up to rounding.
func Job(configHash string, config json.RawMessage, iterations int64) (Aggregate, error) {
	if iterations <= 0 {
		return Aggregate{}, errors.New("iterations must be positive")
	}
	r, err := Chunk(configHash, config, 0, iterations)
	if err != nil {
		return Aggregate{}, err
	}
	return Aggregate{TotalIterations: r.Iterations, MeanDps: r.MeanDps, StdDps: r.StdDps, MinDps: r.MinDps, MaxDps: r.MaxDps,
		ChunksCompleted: int((iterations + ChunkSize - 1) / ChunkSize)}, nil
}
