package scheduler

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// RFC 8785 appendix B: IEEE 754 bit patterns and their canonical text.
func TestFormatNumberRFC8785Vectors(t *testing.T) {
	for bits, want := range map[uint64]string{
		0x0000000000000000: "0",
		0x8000000000000000: "0",
		0x0000000000000001: "5e-324",
		0x8000000000000001: "-5e-324",
		0x7fefffffffffffff: "1.7976931348623157e+308",
		0xffefffffffffffff: "-1.7976931348623157e+308",
		0x4340000000000000: "9007199254740992",
		0xc340000000000000: "-9007199254740992",
		0x4430000000000000: "295147905179352830000",
		0x44b52d02c7e14af5: "9.999999999999997e+22",
		0x44b52d02c7e14af6: "1e+23",
		0x44b52d02c7e14af7: "1.0000000000000001e+23",
		0x444b1ae4d6e2ef4e: "999999999999999700000",
		0x444b1ae4d6e2ef4f: "999999999999999900000",
		0x444b1ae4d6e2ef50: "1e+21",
		0x3eb0c6f7a0b5ed8c: "9.999999999999997e-7",
		0x3eb0c6f7a0b5ed8d: "0.000001",
		0x41b3de4355555553: "333333333.3333332",
		0x41b3de4355555554: "333333333.33333325",
		0x41b3de4355555555: "333333333.3333333",
		0x41b3de4355555556: "333333333.3333334",
		0x41b3de4355555557: "333333333.33333343",
		0xbecbf647612f3696: "-0.0000033333333333333333",
		0x43143ff3c1cb0959: "1424953923781206.2",
	} {
		require.Equal(t, want, FormatNumber(math.Float64frombits(bits)), "%#x", bits)
	}
	for f, want := range map[float64]string{1: "1", -1.5: "-1.5", 100: "100", 0.1: "0.1", 1e-7: "1e-7", 123e18: "123000000000000000000", 1e21: "1e+21", 1.5e300: "1.5e+300"} {
		require.Equal(t, want, FormatNumber(f))
	}
}

func TestCanonicalizeRFC8785Examples(t *testing.T) {
	// Section 3.2.2 example (sorting by UTF-16 units, escapes, numbers).
	in := `{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`
	got, err := Canonicalize([]byte(in))
	require.NoError(t, err)
	require.Equal(t, `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`, string(got))

	// Section 3.2.3 sort example.
	in = `{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`
	got, err = Canonicalize([]byte(in))
	require.NoError(t, err)
	require.Equal(t, "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}", string(got))
}

func TestCanonicalizeRejects(t *testing.T) {
	for _, in := range []string{``, `{`, `{"a":1,"a":2}`, `[1,]`, `1 2`, `1e400`, "\"\xff\"", `{"a":}`, `[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`} {
		_, err := Canonicalize([]byte(in))
		require.Error(t, err, in)
	}
}

func TestConfigHashIgnoresFormatting(t *testing.T) {
	a, err := ConfigHash([]byte(`{"b": 1.0, "a": [true, "x"]}`))
	require.NoError(t, err)
	b, err := ConfigHash([]byte(`{"a":[true,"x"],"b":1}`))
	require.NoError(t, err)
	require.Equal(t, a, b)
	require.Len(t, a, 64)
	// sha256 of `{}`.
	h, _ := ConfigHash([]byte(` { } `))
	require.Equal(t, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", h)
}

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{`{}`, `[1,2.5,-0,1e21]`, `{"b":{"c":[null]},"a":"\u00e9"}`, `"x"`, `{"a":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Canonicalize(in)
		if err != nil {
			return
		}
		// Canonical form is a fixed point.
		c2, err := Canonicalize(c)
		require.NoError(t, err)
		require.Equal(t, string(c), string(c2))
	})
}
