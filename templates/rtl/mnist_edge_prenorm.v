// mnist-edge wide-accumulator front of the requantizer, one value per cycle, 1 stage.
//
// The requantizer (mnist_edge_requant.v) multiplies a magnitude below 2^24. A design
// whose accumulators can reach 2^24 or more (a wide linear layer) puts this stage in
// front of it: as float32(acc) does, |acc| is rounded to 24 significant bits, half to
// even, R * 2^d with R < 2^24 and d <= 8, and the requantizer gets sign * R with its
// shift lowered by d. That is exact: rounding (R * 2^d) * m to 24 significant bits and
// shifting right by `shift` equals rounding R * m and shifting by shift - d. The
// generator checks shift >= 9 wherever |acc| can reach 2^24 (M < 2^14 there).
// Values below 2^24 (every max-pool value among them) pass unchanged.
`default_nettype none

module mnist_edge_prenorm #(
    parameter TAG_W = 16
) (
    input  wire             clk,
    input  wire             in_valid,
    input  wire [31:0]      acc,      // signed
    input  wire [23:0]      m,
    input  wire [7:0]       shift,
    input  wire [TAG_W-1:0] in_tag,
    output reg              out_valid,
    output reg  [31:0]      out_acc,  // signed, |out_acc| < 2^24
    output reg  [23:0]      out_m,
    output reg  [7:0]       out_shift,
    output reg  [TAG_W-1:0] out_tag
);
    wire [31:0] mag = acc[31] ? (~acc + 32'd1) : acc;  // |acc| <= 2^31: fits unsigned
    wire [7:0]  top = mag[31:24];
    // d = bit length of mag[31:24] = how many low bits leave for 24 significant ones
    wire [3:0]  d = top[7] ? 4'd8 : top[6] ? 4'd7 : top[5] ? 4'd6 : top[4] ? 4'd5 :
                    top[3] ? 4'd4 : top[2] ? 4'd3 : top[1] ? 4'd2 : {3'd0, top[0]};
    wire [31:0] q      = mag >> d;
    wire [3:0]  dm1    = d - 4'd1;
    wire        guard  = (d != 4'd0) && mag[{2'b00, dm1[2:0]}];
    wire        sticky = (d > 4'd1) && (|(mag & ~({32{1'b1}} << dm1)));
    wire [24:0] r      = q[24:0] + {24'd0, guard && (sticky || q[0])};  // <= 2^24
    wire        unused_q = &{1'b0, q[31:25]};
    // R = 2^24 (the rounding carried out): 2^23 * 2^(d + 1)
    wire [23:0] r24    = r[24] ? 24'h80_0000 : r[23:0];
    wire [3:0]  d24    = d + {3'd0, r[24]};
    always @(posedge clk) begin
        out_valid <= in_valid;
        out_acc   <= acc[31] ? -{8'd0, r24} : {8'd0, r24};
        out_m     <= m;
        out_shift <= shift - {4'd0, d24};
        out_tag   <= in_tag;
    end
endmodule

`default_nettype wire
