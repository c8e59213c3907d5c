// mnist-edge integer-only requantization, one value per cycle, 6 pipeline stages.
//
// y = saturate_int8(rne(rne24(|acc| * m) * 2^-shift) * sign(acc) + z_y), exactly the
// integer path of mnist_edge/requant.py and the C kernels' int mode:
//   1. P = |acc| * m, exact (|acc| < 2^24 and m < 2^24, so P < 2^48);
//   2. P rounded to 24 significant bits, half to even (what the float32 multiply does);
//   3. that shifted right by `shift`, half to even; the sign applied; z_y added; saturated.
// With `bypass` set (max pooling) the low byte of acc passes through unchanged.
`default_nettype none

module mnist_edge_requant #(
    parameter TAG_W = 16
) (
    input  wire             clk,
    input  wire             in_valid,
    input  wire             bypass,
    input  wire [31:0]      acc,      // signed accumulator (bias included)
    input  wire [23:0]      m,        // multiplier mantissa, M = m * 2^-shift
    input  wire [7:0]       shift,
    input  wire [7:0]       zy,       // output zero point, signed
    input  wire [TAG_W-1:0] in_tag,
    output reg              out_valid,
    output reg  [7:0]       out_y,    // signed int8
    output reg  [TAG_W-1:0] out_tag
);
    // ---- stage 1: sign and magnitude
    reg              s1_v, s1_byp, s1_neg;
    reg [23:0]       s1_mag, s1_m;
    reg [7:0]        s1_shift, s1_zy, s1_low;
    reg [TAG_W-1:0]  s1_tag;
    wire [31:0]      acc_abs = acc[31] ? (~acc + 32'd1) : acc;
    wire             unused_abs = &{1'b0, acc_abs[31:24]};  // |acc| < 2^24 (the contract)
    always @(posedge clk) begin
        s1_v     <= in_valid;
        s1_byp   <= bypass;
        s1_neg   <= acc[31];
        s1_mag   <= acc_abs[23:0];
        s1_m     <= m;
        s1_shift <= shift;
        s1_zy    <= zy;
        s1_low   <= acc[7:0];
        s1_tag   <= in_tag;
    end

    // ---- stage 2: the exact 48-bit product (DSP multipliers)
    reg              s2_v, s2_byp, s2_neg;
    reg [47:0]       s2_p;
    reg [7:0]        s2_shift, s2_zy, s2_low;
    reg [TAG_W-1:0]  s2_tag;
    always @(posedge clk) begin
        s2_v     <= s1_v;
        s2_byp   <= s1_byp;
        s2_neg   <= s1_neg;
        s2_p     <= s1_mag * s1_m;
        s2_shift <= s1_shift;
        s2_zy    <= s1_zy;
        s2_low   <= s1_low;
        s2_tag   <= s1_tag;
    end

    // ---- stage 3: bit length of P, bits to drop for 24 significant bits
    reg [5:0] bitlen;
    integer   b;
    always @(*) begin
        bitlen = 6'd0;
        for (b = 0; b < 48; b = b + 1)
            if (s2_p[b]) bitlen = b[5:0] + 6'd1;
    end
    wire [5:0] excess = bitlen - 6'd24;
    wire       unused_excess = excess[5];
    reg              s3_v, s3_byp, s3_neg;
    reg [47:0]       s3_p;
    reg [4:0]        s3_drop;   // 0..24
    reg [7:0]        s3_shift, s3_zy, s3_low;
    reg [TAG_W-1:0]  s3_tag;
    always @(posedge clk) begin
        s3_v     <= s2_v;
        s3_byp   <= s2_byp;
        s3_neg   <= s2_neg;
        s3_p     <= s2_p;
        s3_drop  <= (bitlen > 6'd24) ? excess[4:0] : 5'd0;
        s3_shift <= s2_shift;
        s3_zy    <= s2_zy;
        s3_low   <= s2_low;
        s3_tag   <= s2_tag;
    end

    // ---- stage 4: R = rne(P / 2^drop) <= 2^24; remaining shift t = shift - drop
    wire [47:0] q4    = s3_p >> s3_drop;
    wire [47:0] keep4 = (48'd1 << s3_drop) - 48'd1;
    wire [47:0] rem4  = s3_p & keep4;
    wire [47:0] half4 = (48'd1 << s3_drop) >> 1;
    wire        unused_q4 = &{1'b0, q4[47:25]};  // P < 2^48, so P >> drop < 2^25
    wire        up4   = (s3_drop != 5'd0) && ((rem4 > half4) || ((rem4 == half4) && q4[0]));
    reg              s4_v, s4_byp, s4_neg;
    reg [24:0]       s4_r;
    reg signed [9:0] s4_t;
    reg [7:0]        s4_zy, s4_low;
    reg [TAG_W-1:0]  s4_tag;
    always @(posedge clk) begin
        s4_v   <= s3_v;
        s4_byp <= s3_byp;
        s4_neg <= s3_neg;
        s4_r   <= q4[24:0] + {24'd0, up4};
        s4_t   <= $signed({2'b00, s3_shift}) - $signed({5'b00000, s3_drop});
        s4_zy  <= s3_zy;
        s4_low <= s3_low;
        s4_tag <= s3_tag;
    end

    // ---- stage 5: Y = rne(R / 2^t) (t > 0), R * 2^-t (t <= 0), with the sign
    wire [4:0]  t5     = (s4_t > 10'sd26) ? 5'd26 : s4_t[4:0];  // r < 2^25: more gives 0 too
    wire [31:0] r5     = {7'd0, s4_r};
    wire [31:0] q5     = r5 >> t5;
    wire [31:0] rem5   = r5 & ((32'd1 << t5) - 32'd1);
    wire [31:0] half5  = (32'd1 << t5) >> 1;
    wire        up5    = (rem5 > half5) || ((rem5 == half5) && q5[0]);
    wire [9:0]  neg_t5 = -s4_t;
    wire [4:0]  left5  = neg_t5[4:0];
    wire        unused_t5 = &{1'b0, neg_t5[9:5]};
    reg  [31:0] mag5;
    always @(*) begin
        if (s4_t > 10'sd0)
            mag5 = q5 + {31'd0, up5};
        else if (s4_t > -10'sd7)
            mag5 = r5 << left5;
        else
            mag5 = (s4_r != 25'd0) ? 32'h0100_0000 : 32'd0;  // far outside int8
    end
    reg              s5_v, s5_byp;
    reg signed [31:0] s5_y;
    reg [7:0]        s5_zy, s5_low;
    reg [TAG_W-1:0]  s5_tag;
    always @(posedge clk) begin
        s5_v   <= s4_v;
        s5_byp <= s4_byp;
        s5_y   <= s4_neg ? -$signed(mag5) : $signed(mag5);
        s5_zy  <= s4_zy;
        s5_low <= s4_low;
        s5_tag <= s4_tag;
    end

    // ---- stage 6: + z_y, saturate to int8
    wire signed [31:0] z6 = s5_y + {{24{s5_zy[7]}}, s5_zy};
    always @(posedge clk) begin
        out_valid <= s5_v;
        out_tag   <= s5_tag;
        if (s5_byp)
            out_y <= s5_low;
        else if (z6 > 32'sd127)
            out_y <= 8'h7F;
        else if (z6 < -32'sd128)
            out_y <= 8'h80;
        else
            out_y <= z6[7:0];
    end
endmodule

`default_nettype wire
