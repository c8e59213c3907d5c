// mnist-edge requantization in the `tflite` arithmetic, one value per cycle, 7 stages.
//
// TFLM's output stage, bit for bit (mnist_edge/requant.py, requantize_tflite):
//   x = int32(acc << max(shift, 0))                    (wraps as C++ int32 does)
//   q = SaturatingRoundingDoublingHighMul(x, m)        = trunc((x * m + nudge) / 2^31),
//       nudge = 2^30 when x * m >= 0, else 1 - 2^30    (m >= 0: the saturating case, both
//                                                       operands -2^31, cannot occur)
//   r = RoundingDivideByPOT(q, max(-shift, 0))         (half away from zero)
//   y = clamp(r + z_y, act_lo, act_hi)                 (the fused activation, within int8)
// m is QuantizeMultiplier's Q31 mantissa (0 <= m < 2^31), shift its exponent (-31..30).
//
// `divide` (AVERAGE_POOL_2D): y = clamp(sign(acc) * floor((|acc| + half) * m / 2^31)),
// with m = ceil(2^31 / N) chosen by the generator so that this equals TFLM's
// (acc +- N/2) / N in C's truncating division for every sum of N int8 values
// (the generator checks every one); shift is 0, z_y 0.
// `bypass` (max pools, copies): the low byte of acc, then the clamp.
`default_nettype none

module mnist_edge_requant_tfl #(
    parameter TAG_W = 16
) (
    input  wire             clk,
    input  wire             in_valid,
    input  wire             bypass,
    input  wire             divide,
    input  wire [31:0]      acc,      // signed int32 accumulator (bias included)
    input  wire [31:0]      m,        // Q31 multiplier, 0 <= m < 2^31 (divide: up to 2^31)
    input  wire [7:0]       shift,    // signed exponent, -31..30
    input  wire [15:0]      half,     // divide: N / 2
    input  wire [7:0]       zy,       // output zero point, signed
    input  wire [7:0]       act_lo,   // fused activation range, signed
    input  wire [7:0]       act_hi,
    input  wire [TAG_W-1:0] in_tag,
    output reg              out_valid,
    output reg  [7:0]       out_y,    // signed int8
    output reg  [TAG_W-1:0] out_tag
);
    // values that ride along every stage unchanged
    localparam SIDE_W = 1 + 1 + 1 + 8 + 8 + 8 + 8 + TAG_W;  // bypass, divide, neg, zy, lo, hi, byte
    reg [5:0] v;
    reg [SIDE_W-1:0] side [1:6];
    reg [4:0] right_d [1:4];

    // ---- stage 1: the multiplicand. MBQM: acc << left, wrapped to 32 bits; divide:
    // |acc| + half (|acc| <= 128 N, no wrap)
    wire        neg0   = acc[31];
    wire [31:0] mag0   = neg0 ? (~acc + 32'd1) : acc;
    wire [4:0]  left0  = shift[7] ? 5'd0 : shift[4:0];
    wire [7:0]  nsh0   = 8'd0 - shift;
    wire [4:0]  right0 = shift[7] ? nsh0[4:0] : 5'd0;  // -31..-1 -> 31..1
    wire        unused_sh = &{1'b0, nsh0[7:5]};
    wire [31:0] xl0    = acc << left0;
    reg  signed [32:0] s1_x;   // 33 bits: divide's |acc| + half is unsigned 32
    reg         [31:0] s1_m;
    reg  signed [31:0] s1_nudge;
    always @(posedge clk) begin
        s1_x <= divide ? {1'b0, mag0 + {16'd0, half}} : {xl0[31], xl0};
        s1_m <= m;
        // SRDHM's nudge by the sign of x * m, known here: m >= 0, so x * m < 0 exactly
        // when x < 0 and m != 0; divide takes none
        s1_nudge <= divide ? 32'sd0 : (xl0[31] && m != 32'd0) ? 32'sd1 - (32'sd1 <<< 30)
                                                              : (32'sd1 <<< 30);
    end

    // ---- stage 2: the product's two halves, x * m[15:0] + nudge and x * m[31:16] (DSPs)
    reg signed [49:0] s2_lo, s2_hi;
    always @(posedge clk) begin
        s2_lo <= s1_x * $signed({1'b0, s1_m[15:0]}) + $signed({{18{s1_nudge[31]}}, s1_nudge});
        s2_hi <= s1_x * $signed({1'b0, s1_m[31:16]});
    end

    // ---- stage 3: x * m + nudge, exact (|x * m| < 2^64)
    reg  signed [65:0] s3_num;
    always @(posedge clk) s3_num <= {{16{s2_lo[49]}}, s2_lo} + {s2_hi, 16'd0};

    // ---- stage 4: q = num / 2^31 truncated towards zero (divide: num >= 0, a floor)
    wire signed [34:0] fl3 = s3_num[65:31];   // floor(num / 2^31)
    wire               frac3 = |s3_num[30:0];
    reg  signed [34:0] s4_q;
    always @(posedge clk) s4_q <= fl3 + {34'd0, s3_num[65] && frac3};

    // ---- stage 5: RoundingDivideByPOT(q, right): floor shift, then +1 when the remainder
    // exceeds (2^right - 1) / 2 + (q < 0): the guard bit, and for q < 0 a sticky bit too
    wire [4:0]  r4   = right_d[4];
    wire [4:0]  rm1  = r4 - 5'd1;
    wire signed [34:0] sh4 = s4_q >>> r4;
    wire        guard4  = (r4 != 5'd0) && s4_q[{1'b0, rm1}];
    wire        sticky4 = (r4 > 5'd1) && (|(s4_q[31:0] & ~({32{1'b1}} << rm1)));
    reg  signed [34:0] s5_r;
    always @(posedge clk)
        s5_r <= sh4 + {34'd0, guard4 && (!s4_q[34] || sticky4)};

    // ---- stage 6: the sign (divide), + z_y
    wire        neg5 = side[5][SIDE_W-3];
    wire        div5 = side[5][SIDE_W-2];
    wire [7:0]  zy5  = side[5][SIDE_W-4 -: 8];
    wire signed [35:0] r5 = (div5 && neg5) ? -{s5_r[34], s5_r} : {s5_r[34], s5_r};
    reg  signed [35:0] s6_y;
    always @(posedge clk) s6_y <= r5 + {{28{zy5[7]}}, zy5};

    // ---- stage 7: bypass or the value, clamped to the activation range
    wire        byp6 = side[6][SIDE_W-1];
    wire [7:0]  lo6  = side[6][SIDE_W-12 -: 8];
    wire [7:0]  hi6  = side[6][SIDE_W-20 -: 8];
    wire [7:0]  low6 = side[6][TAG_W +: 8];
    wire signed [35:0] y6 = byp6 ? {{28{low6[7]}}, low6} : s6_y;
    wire signed [35:0] lo6x = {{28{lo6[7]}}, lo6};
    wire signed [35:0] hi6x = {{28{hi6[7]}}, hi6};
    always @(posedge clk) begin
        out_valid <= v[5];
        out_tag   <= side[6][TAG_W-1:0];
        out_y     <= (y6 < lo6x) ? lo6 : (y6 > hi6x) ? hi6 : y6[7:0];
    end

    integer k;
    always @(posedge clk) begin
        v <= {v[4:0], in_valid};
        side[1] <= {bypass, divide, neg0, zy, act_lo, act_hi, acc[7:0], in_tag};
        for (k = 2; k <= 6; k = k + 1) side[k] <= side[k - 1];
        right_d[1] <= divide ? 5'd0 : right0;
        for (k = 2; k <= 4; k = k + 1) right_d[k] <= right_d[k - 1];
    end
endmodule

`default_nettype wire
