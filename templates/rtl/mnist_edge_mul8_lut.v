// mnist-edge int8 x int8 multiplier in logic (LUT4 and carry chains), for the lanes beyond
// the device's DSP blocks: radix-4 Booth on b, 4 partial products of a.
//
// b = sum_j d_j 4^j with digits d_j = -2 b[2j+1] + b[2j] + b[2j-1] (b[-1] = 0) in -2..2,
// so a * b = sum_j (d_j * a) 4^j. Each partial product is |d_j| a (a or 2a, 10 bits
// signed), inverted when d_j < 0, with the missing +1 of the two's complement (neg_j) added
// at bit 2j. The sign bits are extended the usual way: partial product j's sign bit s is
// stored inverted, and the constant -sum_j 2^(9+2j) restores it (modulo 2^16).
// About half the logic of yosys's own `*` on the ECP5 (176 against 326 LUT4 equivalents
// per multiplier with its accumulator in a 16-lane test, synth_ecp5 -nodsp). The sums stay
// written this way: an arrangement with the +1s in the rows' low bits simulated exactly
// as written but not after yosys 0.23's synth_ecp5, so tests/test_rtl.py sweeps all 2^16
// pairs through this file and through its ECP5 netlist (yosys's cell models).
`default_nettype none

module mnist_edge_mul8_lut (
    input  wire [7:0]  a,  // signed
    input  wire [7:0]  b,  // signed
    output wire [15:0] p   // signed a * b
);
    wire [8:0]  bx = {b, 1'b0};
    wire [9:0]  a1 = {a[7], a[7], a};  // a, sign-extended
    wire [9:0]  a2 = {a[7], a, 1'b0};  // 2a
    wire [39:0] pp;                    // partial product j at [10*j +: 10], sign inverted
    wire [3:0]  neg;
    genvar j;
    generate
        for (j = 0; j < 4; j = j + 1) begin : digit
            wire [2:0] d = bx[2*j +: 3];
            wire one = d[1] ^ d[0];
            wire two = (d == 3'b011) || (d == 3'b100);
            assign neg[j] = d[2] && !(d[1] && d[0]);
            wire [9:0] mag = one ? a1 : (two ? a2 : 10'd0);
            wire [9:0] v = mag ^ {10{neg[j]}};
            assign pp[10*j +: 10] = {~v[9], v[8:0]};
        end
    endgenerate
    // -(2^9 + 2^11 + 2^13 + 2^15) modulo 2^16, and the negations' +1 at bits 0, 2, 4, 6
    localparam [15:0] SIGNS = 16'h5600;
    wire [15:0] t0 = {6'd0, pp[9:0]} + {4'd0, pp[19:10], 2'd0};
    wire [15:0] t1 = {2'd0, pp[29:20], 4'd0} + {pp[39:30], 6'd0};
    assign p = t0 + t1 + (SIGNS | {9'd0, neg[3], 1'b0, neg[2], 1'b0, neg[1], 1'b0, neg[0]});
endmodule

`default_nettype wire
