// Two independent 8 x 8 products on one iCE40 SB_MAC16, instantiated explicitly in its
// dual 8x8 mode (no inference: yosys 0.23's SB_MAC16 inference gave a wrong netlist).
//
//   p_hi = (a_hi + 128) * (b_hi + 128)     p_lo = (a_lo + 128) * (b_lo + 128)
//
// a_*, b_* are int8 (two's complement); the products are of the offset operands, as
// unsigned 16-bit values, two clock edges after the operands (the DSP's input registers,
// then its 8x8 product registers: no fabric flip-flops). The signed product follows:
//
//   a * b = p - 128 * (a + 128) - 128 * (b + 128) + 16384
//
// and a dot product of n terms needs no per-product correction (the n * 16384 cancel):
// sum(a*b) = sum(p) - 128 * sum(a + 128) - 128 * sum(b), whose last term is a constant of
// the weights (folded into the bias) and whose middle term is one sum shared by every lane
// that reads the same input.
//
// Why unsigned operands: the DSP is configured unsigned (A_SIGNED = B_SIGNED = 0), where
// every source agrees on what the bottom 8x8 product computes. With A_SIGNED/B_SIGNED set,
// Lattice's technology library describes the signedness of the 16-bit operands; yosys's
// simulation model sign-extends the low bytes in MODE_8x8, but no document states that
// the silicon does. Flipping bit 7 (a + 128) costs one LUT input, not an adder.
//
// Without `MNIST_EDGE_ICE40_DSP` (Verilator on the RTL, other devices) the same registers
// and products are written in plain Verilog.
`default_nettype none

module mnist_edge_mul8x2 (
    input  wire        clk,
    input  wire [7:0]  a_hi,
    input  wire [7:0]  b_hi,
    input  wire [7:0]  a_lo,
    input  wire [7:0]  b_lo,
    output wire [15:0] p_hi,   // (a_hi + 128) * (b_hi + 128), unsigned
    output wire [15:0] p_lo    // (a_lo + 128) * (b_lo + 128), unsigned
);
    wire [15:0] a = {a_hi ^ 8'h80, a_lo ^ 8'h80};  // x + 128 = x with bit 7 flipped
    wire [15:0] b = {b_hi ^ 8'h80, b_lo ^ 8'h80};
`ifdef MNIST_EDGE_ICE40_DSP
    wire [31:0] o;
    SB_MAC16 #(
        .NEG_TRIGGER(1'b0), .C_REG(1'b0), .A_REG(1'b1), .B_REG(1'b1), .D_REG(1'b0),
        .TOP_8x8_MULT_REG(1'b1), .BOT_8x8_MULT_REG(1'b1),
        .PIPELINE_16x16_MULT_REG1(1'b0), .PIPELINE_16x16_MULT_REG2(1'b0),
        .TOPOUTPUT_SELECT(2'b10), .TOPADDSUB_LOWERINPUT(2'b00), .TOPADDSUB_UPPERINPUT(1'b0),
        .TOPADDSUB_CARRYSELECT(2'b00),
        .BOTOUTPUT_SELECT(2'b10), .BOTADDSUB_LOWERINPUT(2'b00), .BOTADDSUB_UPPERINPUT(1'b0),
        .BOTADDSUB_CARRYSELECT(2'b00),
        .MODE_8x8(1'b1), .A_SIGNED(1'b0), .B_SIGNED(1'b0)
    ) dsp (
        .CLK(clk), .CE(1'b1), .C(16'd0), .A(a), .B(b), .D(16'd0),
        .AHOLD(1'b0), .BHOLD(1'b0), .CHOLD(1'b0), .DHOLD(1'b0),
        .IRSTTOP(1'b0), .IRSTBOT(1'b0), .ORSTTOP(1'b0), .ORSTBOT(1'b0),
        .OLOADTOP(1'b0), .OLOADBOT(1'b0), .ADDSUBTOP(1'b0), .ADDSUBBOT(1'b0),
        .OHOLDTOP(1'b0), .OHOLDBOT(1'b0), .CI(1'b0), .ACCUMCI(1'b0), .SIGNEXTIN(1'b0),
        .O(o), .CO(), .ACCUMCO(), .SIGNEXTOUT());
    // O[31:16]: the top 8x8 product register (A[15:8] * B[15:8]); O[15:0]: the bottom one
    assign p_hi = o[31:16];
    assign p_lo = o[15:0];
`else
    reg [15:0] ra, rb, ph, pl;
    always @(posedge clk) begin
        ra <= a;
        rb <= b;
        ph <= {8'd0, ra[15:8]} * {8'd0, rb[15:8]};
        pl <= {8'd0, ra[7:0]} * {8'd0, rb[7:0]};
    end
    assign p_hi = ph;
    assign p_lo = pl;
`endif
endmodule

`default_nettype wire
