// One activation buffer with a read port and a write port (simple dual port, registered
// read): a layer may write the buffer it reads, at addresses the planner keeps apart from
// every tensor live beside (rtl_plan.py), so a residual add finds both inputs in one
// buffer without a copy layer. ECP5 block RAM (DP16KD) has the two ports; designs for
// the iCE40's single-port SPRAM use mnist_edge_act_ram.v.
// The write port is 16 bits wide with a byte enable each (yosys merges the two byte
// writes into one DP16KD write port): `pair` writes wdata at an even waddr and wdata_hi
// beside it, at waddr + 1, in one cycle (the wide drain); else wdata alone at waddr.
`default_nettype none

module mnist_edge_act_ram_dp #(
    parameter DEPTH = 1024,
    parameter AW = 16
) (
    input  wire          clk,
    input  wire          we,
    input  wire [AW-1:0] waddr,
    input  wire [7:0]    wdata,
    input  wire          pair,      // with we: waddr is even, wdata_hi goes to waddr + 1
    input  wire [7:0]    wdata_hi,
    input  wire [AW-1:0] raddr,
    output wire [7:0]    rdata
);
    reg [7:0] mem [0:DEPTH-1];
    reg [7:0] q;
    wire [AW-2:0] word = waddr[AW-1:1];        // the 16-bit word of the two bytes (AW >= 2)
    wire we_lo = we && (pair || !waddr[0]);
    wire we_hi = we && (pair || waddr[0]);
    always @(posedge clk) begin
        if (we_lo) mem[{word, 1'b0}] <= wdata;
        if (we_hi) mem[{word, 1'b1}] <= pair ? wdata_hi : wdata;
        q <= mem[raddr];
    end
    assign rdata = q;
endmodule

`default_nettype wire
