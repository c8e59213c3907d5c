// mnist-edge integer-only requantization, one value per cycle, 8 pipeline stages.
//
// y = saturate_int8(rne(rne24(|acc| * m) * 2^-shift) * sign(acc) + z_y), exactly the
// integer path of mnist_edge/requant.py and the C kernels' int mode:
//   1. P = |acc| * m, exact (|acc| < 2^24 and m < 2^24, so P < 2^48);
//   2. P rounded to 24 significant bits, half to even (what the float32 multiply does);
//   3. that shifted right by `shift`, half to even; the sign applied; z_y added; saturated.
// Each round-half-even shift keeps q = v >> s, the guard bit v[s-1] and the sticky OR of
// the bits below it: it rounds up when guard && (sticky || q odd).
// With `bypass` set (max pooling) the low byte of acc passes through unchanged.
// Latency: 8 cycles, plus 24 / DIGIT + 2 when the product is computed digit by digit.
`default_nettype none

module mnist_edge_requant #(
    parameter TAG_W = 16,
    // 0: the 24 x 24 product in one cycle (`*`, DSP blocks); 8 or 12: in 24 / DIGIT cycles,
    // one DIGIT-bit digit of m per cycle in logic (no DSP block), and then in_valid must
    // come at most once every 24 / DIGIT cycles
    parameter DIGIT = 0
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
    // values that ride along every stage unchanged
    localparam SIDE_W = 1 + 1 + 8 + 8 + TAG_W;  // bypass, sign, zy, low byte, tag
    localparam E = (DIGIT == 0) ? 0 : 24 / DIGIT + 2;  // extra stages with DIGIT
    reg [6+E:0] v;                               // valid of stages 1..7+E
    reg [SIDE_W-1:0] side [1:7+E];
    reg [7:0] shift_d [1:3+E];

    // ---- stage 1: sign and magnitude
    wire [31:0] acc_abs = acc[31] ? (~acc + 32'd1) : acc;
    wire        unused_abs = &{1'b0, acc_abs[31:24]};  // |acc| < 2^24 (the contract)
    reg  [23:0] s1_mag, s1_m;
    always @(posedge clk) begin
        s1_mag <= acc_abs[23:0];
        s1_m   <= m;
    end

    // ---- stage 2: the exact 48-bit product
    reg [47:0] s2_p;
    generate
        if (DIGIT == 0) begin : full  // one cycle (DSP multipliers)
            always @(posedge clk) s2_p <= s1_mag * s1_m;
        end else begin : digits
            // m's digits top first: pp = |acc| * digit, in two registered halves (pa, pb)
            // then summed (pp), then P = P * 2^DIGIT + pp; the first digit's product starts
            // the cycle stage 1 holds the value, the last one is added E - 1 cycles later,
            // so P is ready E + 1 cycles after stage 1
            localparam H = DIGIT / 2;
            reg [23:0]         mag;    // |acc|, loaded beside stage 1
            reg [23:0]         rest;   // the digits not multiplied yet, top aligned
            reg [H+23:0]       pa, pb; // |acc| * the digit's low and high half
            reg [DIGIT+23:0]   pp;
            reg                pa_first, pp_first;
            wire [DIGIT-1:0]   dig = rest[23 -: DIGIT];
            wire               unused_s1 = &{1'b0, s1_mag, s1_m};  // stage 1 as `mag`, `rest`
            always @(posedge clk) begin
                if (in_valid) begin
                    mag  <= acc_abs[23:0];
                    rest <= m;
                end else begin
                    rest <= rest << DIGIT;
                end
                pa       <= {{H{1'b0}}, mag} * {24'd0, dig[H-1:0]};
                pb       <= {{H{1'b0}}, mag} * {24'd0, dig[DIGIT-1:H]};
                pa_first <= v[0];
                pp       <= {{H{1'b0}}, pa} + {pb, {H{1'b0}}};
                pp_first <= pa_first;
                s2_p     <= (pp_first ? 48'd0 : s2_p << DIGIT) + {{(24-DIGIT){1'b0}}, pp};
            end
        end
    endgenerate

    // ---- stage 3: bits to drop for 24 significant bits = bit length of P[47:24] (0..24).
    // DIGIT 0: found by halving (a log-depth leading-one search). With DIGIT: each byte's
    // bit length, registered (a stage more), then the highest nonzero byte's; on the iCE40
    // this took the search off the critical path, on the ECP5 (DIGIT 0) the byte form
    // synthesized to 2,000 more LUT4 in the whole design.
    reg [47:0] p3in;
    reg [4:0]  drop3;
    generate
        if (DIGIT == 0) begin : lz_halving
            reg [23:0] top3;
            always @(*) begin
                p3in  = s2_p;
                top3  = s2_p[47:24];
                drop3 = 5'd0;
                if (top3[23:16] != 8'd0) begin drop3 = drop3 + 5'd16; top3 = top3 >> 16; end
                if (top3[15:8] != 8'd0) begin drop3 = drop3 + 5'd8; top3 = top3 >> 8; end
                if (top3[7:4] != 4'd0) begin drop3 = drop3 + 5'd4; top3 = top3 >> 4; end
                if (top3[3:2] != 2'd0) begin drop3 = drop3 + 5'd2; top3 = top3 >> 2; end
                if (top3[1]) begin drop3 = drop3 + 5'd1; top3 = top3 >> 1; end
                drop3 = drop3 + {4'd0, top3[0]};
            end
        end else begin : lz_bytes
            wire [23:0] top2 = s2_p[47:24];
            wire [11:0] blen2;  // byte b's bit length (0..8) at [4*b +: 4]
            genvar gb;
            for (gb = 0; gb < 3; gb = gb + 1) begin : byte_len
                wire [7:0] x = top2[8*gb +: 8];
                assign blen2[4*gb +: 4] = x[7] ? 4'd8 : x[6] ? 4'd7 : x[5] ? 4'd6 :
                                          x[4] ? 4'd5 : x[3] ? 4'd4 : x[2] ? 4'd3 :
                                          x[1] ? 4'd2 : {3'd0, x[0]};
            end
            reg [1:0]  nz3;   // P[47:40] != 0, P[39:32] != 0
            reg [11:0] blen3;
            always @(posedge clk) begin
                p3in  <= s2_p;
                nz3   <= {|top2[23:16], |top2[15:8]};
                blen3 <= blen2;
            end
            always @(*)
                drop3 = nz3[1] ? 5'd16 + {1'b0, blen3[11:8]} :
                        nz3[0] ? 5'd8 + {1'b0, blen3[7:4]} : {1'b0, blen3[3:0]};
        end
    endgenerate
    reg [47:0] s3_p;
    reg [4:0]  s3_drop, s3_dm1;  // drop and drop - 1
    reg        s3_dnz;           // drop != 0
    always @(posedge clk) begin
        s3_p    <= p3in;
        s3_drop <= drop3;
        s3_dm1  <= drop3 - 5'd1;
        s3_dnz  <= drop3 != 5'd0;
    end

    // ---- stage 4: q = P >> drop with its guard and sticky bits; t = shift - drop
    wire [47:0] q4      = s3_p >> s3_drop;
    wire        unused_q4 = &{1'b0, q4[47:25]};  // P < 2^48, so P >> drop < 2^25
    wire        guard4  = s3_dnz && s3_p[{1'b0, s3_dm1}];
    wire        sticky4 = s3_dnz && (|(s3_p & ~({48{1'b1}} << s3_dm1)));
    reg [24:0]       s4_q;
    reg              s4_guard, s4_sticky;
    reg signed [9:0] s4_t;
    always @(posedge clk) begin
        s4_q      <= q4[24:0];
        s4_guard  <= guard4;
        s4_sticky <= sticky4;
        s4_t      <= $signed({2'b00, shift_d[3+E]}) - $signed({5'b00000, s3_drop});
    end

    // ---- stage 5: R = rne(P / 2^drop) <= 2^24; how the remaining shift t applies
    wire [9:0]  neg_t4  = -s4_t;
    wire        unused_t4 = &{1'b0, neg_t4[9:5]};
    reg [24:0]  s5_r;
    reg         s5_right, s5_left;   // t > 0: round right by tp; -7 < t <= 0: shift left
    reg [4:0]   s5_tp, s5_tm1, s5_l; // tp = min(t, 26) (R < 2^25: more gives 0 too), tp - 1, -t
    always @(posedge clk) begin
        s5_r     <= s4_q + {24'd0, s4_guard && (s4_sticky || s4_q[0])};
        s5_right <= s4_t > 10'sd0;
        s5_left  <= (s4_t <= 10'sd0) && (s4_t > -10'sd7);
        s5_tp    <= (s4_t > 10'sd26) ? 5'd26 : s4_t[4:0];
        s5_tm1   <= (s4_t > 10'sd26) ? 5'd25 : s4_t[4:0] - 5'd1;
        s5_l     <= neg_t4[4:0];
    end

    // ---- stage 6: q = R >> tp with guard and sticky, or R << -t, or far out of range
    wire [31:0] r6 = {7'd0, s5_r};
    reg  [31:0] s6_q;
    reg         s6_up;
    always @(posedge clk) begin
        s6_up <= 1'b0;
        if (s5_right) begin
            s6_q  <= r6 >> s5_tp;
            s6_up <= r6[s5_tm1] && ((|(r6 & ~({32{1'b1}} << s5_tm1))) || r6[s5_tp]);
        end else if (s5_left) begin
            s6_q  <= r6 << s5_l;
        end else begin
            s6_q  <= (s5_r != 25'd0) ? 32'h0100_0000 : 32'd0;  // far outside int8
        end
    end

    // ---- stage 7: rounded magnitude with the sign. A magnitude of 384 or more saturates
    // whatever z_y (-128..127) adds, so it is clamped to 511 first: 11-bit values onwards.
    // One adder for both signs: -(q + up) = ~q + !up.
    reg signed [10:0] s7_y;
    wire              neg6 = side[6+E][SIDE_W-2];
    wire [8:0]        q6   = (|s6_q[31:9]) ? 9'd511 : s6_q[8:0];
    always @(posedge clk) s7_y <= ({2'b00, q6} ^ {11{neg6}}) + {10'd0, s6_up ^ neg6};

    // ---- stage 8: + z_y, saturate to int8
    wire              byp7 = side[7+E][SIDE_W-1];
    wire [7:0]        zy7  = side[7+E][SIDE_W-3 -: 8];
    wire [7:0]        low7 = side[7+E][TAG_W +: 8];
    wire signed [11:0] z7  = {s7_y[10], s7_y} + {{4{zy7[7]}}, zy7};
    always @(posedge clk) begin
        out_valid <= v[6+E];
        out_tag   <= side[7+E][TAG_W-1:0];
        if (byp7)
            out_y <= low7;
        else if (z7 > 12'sd127)
            out_y <= 8'h7F;
        else if (z7 < -12'sd128)
            out_y <= 8'h80;
        else
            out_y <= z7[7:0];
    end

    integer k;
    always @(posedge clk) begin
        v <= {v[5+E:0], in_valid};
        side[1] <= {bypass, acc[31], zy, acc[7:0], in_tag};
        for (k = 2; k <= 7 + E; k = k + 1) side[k] <= side[k - 1];
        shift_d[1] <= shift;
        for (k = 2; k <= 3 + E; k = k + 1) shift_d[k] <= shift_d[k - 1];
    end
endmodule

`default_nettype wire
