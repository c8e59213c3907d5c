// mnist-edge int8 x int8 multiplier in logic, for the ECP5's lanes beyond its DSP blocks:
// a Baugh-Wooley array whose partial-product gates live in the carry chains' own LUT4s.
//
// a * b = sum_{i,j} t(i,j) 2^(i+j) + 2^8 + 2^15 (mod 2^16), with t(i,j) = a_i b_j, inverted
// where exactly one of i, j is 7 (the sign terms: -x 2^k = ~x 2^k - 2^k, and the 2^k
// add up to 2^15 - 2^8). Row j = t(., j). Rows 2m and 2m+1 are summed in one carry chain
// (pair m, 10 bits of weight 2^(2m)): column c adds t(c, 2m) and t(c-1, 2m+1), each a gate
// of two inputs, so the column's CCU2C half computes both gates and their sum bit in its
// LUT4 (propagate P = t1 ^ t2 on inputs A, B, C, D) and its carry from its LUT2 (generate
// G = P(A, B, 0, 0) = t1, right whenever P = 0, i.e. t1 = t2; the CCU2C's own model in
// yosys's cells_sim.v). A column with one term ties C, D to constants. The 2^8 and 2^15
// ride in pairs 0 and 3. Then three adders (pairs 0+1, 2+3, the two sums) as `+`, which
// synth_ecp5 maps onto CCU2C chains: 37 CCU2C per multiplier, against 147 LUT4, 50 PFUMX,
// 8 L6MUX21 and 8 CCU2C for the radix-4 Booth multiplier it replaces (yosys, -noflatten).
//
// With MNIST_EDGE_ECP5 (the ECP5 synth flow's define) the pairs instantiate CCU2C; without
// it (Verilator, other tools) they are the same sums written with `+`. tests/test_rtl.py
// sweeps all 2^16 int8 pairs through both, through this file with yosys's ECP5 cell
// models, and through its synth_ecp5 netlist.
`default_nettype none

module mnist_edge_mul8_lut (
    input  wire [7:0]  a,  // signed
    input  wire [7:0]  b,  // signed
    output wire [15:0] p   // signed a * b
);
    wire [39:0] s;   // pair m's sum at [10*m +: 10], of weight 2^(2m)
    genvar m;
`ifdef MNIST_EDGE_ECP5
    // LUT4 INIT values (index {D, C, B, A}) of the column kinds
    localparam [15:0] AND_AND   = 16'h7888;  // (A & B) ^ (C & D)
    localparam [15:0] NAND_AND  = 16'h8777;  // ~(A & B) ^ (C & D)
    localparam [15:0] NAND_OR   = 16'h8887;  // ~(A & B) ^ (C | D), C = ~a6, D = ~b7
    localparam [15:0] AND_ONE   = 16'h8888;  // A & B alone (C = D = 0)
    localparam [15:0] NAND_ONE  = 16'h7777;  // ~(A & B) alone (C = D = 0)
    localparam [15:0] NAND_1    = 16'h080F;  // ~(A & B) + 1 (C = 0, D = 1): P = A & B, G = 1
    localparam [15:0] CARRY     = 16'h0000;  // the carry out alone
    localparam [15:0] CARRY_1   = 16'hFFFF;  // the carry out + 1 (the top bit: no carry on)
    wire na6 = ~a[6], nb7 = ~b[7];
    generate
        for (m = 0; m < 4; m = m + 1) begin : pair
            wire [9:0] ha, hb, hc, hd;  // column c's LUT4 inputs
            wire [4:0] co;
            genvar c;
            for (c = 0; c < 10; c = c + 1) begin : col
                if (c == 0) begin : low  // t(0, 2m) alone
                    assign {hd[c], hc[c], hb[c], ha[c]} = {1'b0, 1'b0, b[2*m], a[0]};
                end else if (c < 7 && m < 3) begin : mid  // t(c, 2m) + t(c-1, 2m+1)
                    assign {hd[c], hc[c], hb[c], ha[c]} = {b[2*m+1], a[c-1], b[2*m], a[c]};
                end else if (c < 7) begin : mid7  // ~t(c-1, 7) on A, B + t(c, 6)
                    assign {hd[c], hc[c], hb[c], ha[c]} = {b[6], a[c], b[7], a[c-1]};
                end else if (c == 7 && m < 3) begin : sign  // ~t(7, 2m) + t(6, 2m+1)
                    assign {hd[c], hc[c], hb[c], ha[c]} = {b[2*m+1], a[6], b[2*m], a[7]};
                end else if (c == 7) begin : sign7  // ~t(7, 6) + ~t(6, 7)
                    assign {hd[c], hc[c], hb[c], ha[c]} = {nb7, na6, b[6], a[7]};
                end else if (c == 8) begin : top  // t(7, 2m+1) alone (pair 0: + 2^8)
                    assign {hd[c], hc[c], hb[c], ha[c]} = {m == 0 ? 1'b1 : 1'b0, 1'b0,
                                                           b[2*m+1], a[7]};
                end else begin : carry  // the carry out (pair 3: + 2^15)
                    assign {hd[c], hc[c], hb[c], ha[c]} = 4'b0000;
                end
            end
            genvar k;
            for (k = 0; k < 5; k = k + 1) begin : ccu
                localparam integer C0 = 2 * k, C1 = 2 * k + 1;
                localparam [15:0] INIT0 =
                    C0 == 0 ? AND_ONE :
                    C0 < 7 ? (m < 3 ? AND_AND : NAND_AND) :
                    C0 == 8 ? (m == 3 ? AND_ONE : (m == 0 ? NAND_1 : NAND_ONE)) : CARRY;
                localparam [15:0] INIT1 =
                    C1 < 7 ? (m < 3 ? AND_AND : NAND_AND) :
                    C1 == 7 ? (m < 3 ? NAND_AND : NAND_OR) :
                    (m == 3 ? CARRY_1 : CARRY);
                CCU2C #(.INIT0(INIT0), .INIT1(INIT1), .INJECT1_0("NO"), .INJECT1_1("NO")) cc (
                    .CIN(k == 0 ? 1'b0 : co[k == 0 ? 0 : k - 1]),
                    .A0(ha[C0]), .B0(hb[C0]), .C0(hc[C0]), .D0(hd[C0]),
                    .A1(ha[C1]), .B1(hb[C1]), .C1(hc[C1]), .D1(hd[C1]),
                    .S0(s[10*m + C0]), .S1(s[10*m + C1]), .COUT(co[k]));
            end
            wire unused_pair = &{1'b0, co[4]};
        end
    endgenerate
`else
    wire [63:0] t;   // t(i, j) at [8*j + i]
    genvar i, j;
    generate
        for (j = 0; j < 8; j = j + 1) begin : row
            for (i = 0; i < 8; i = i + 1) begin : bit_
                if ((i == 7) != (j == 7)) begin : sign_term
                    assign t[8*j + i] = ~(a[i] & b[j]);
                end else begin : term
                    assign t[8*j + i] = a[i] & b[j];
                end
            end
        end
    endgenerate
    generate
        for (m = 0; m < 4; m = m + 1) begin : pair
            localparam [9:0] K = m == 0 ? 10'd256 : (m == 3 ? 10'd512 : 10'd0);  // 2^8, 2^15
            assign s[10*m +: 10] = {2'd0, t[16*m +: 8]} + {1'd0, t[16*m + 8 +: 8], 1'd0} + K;
        end
    endgenerate
`endif
    // pairs 0 + 1 (weight 1, 13 bits) and 2 + 3 (weight 2^4, 12 bits, modulo 2^16), then
    // their sum; bits that only one operand covers pass by the adders
    wire [10:0] t0h = {3'd0, s[9:2]} + {1'd0, s[19:10]};
    wire [9:0]  t1h = {2'd0, s[29:22]} + s[39:30];
    wire [11:0] ph  = {3'd0, t0h[10:2]} + {t1h, s[21:20]};
    assign p = {ph, t0h[1:0], s[1:0]};
endmodule

`default_nettype wire
