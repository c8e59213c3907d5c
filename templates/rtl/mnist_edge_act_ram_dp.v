// One activation buffer with a read port and a write port (simple dual port, registered
// read): a layer may write the buffer it reads, at addresses the planner keeps apart from
// every tensor live beside (rtl_plan.py), so a residual add finds both inputs in one
// buffer without a copy layer. ECP5 block RAM (DP16KD) has the two ports; designs for
// the iCE40's single-port SPRAM use mnist_edge_act_ram.v.
`default_nettype none

module mnist_edge_act_ram_dp #(
    parameter DEPTH = 1024,
    parameter AW = 16
) (
    input  wire          clk,
    input  wire          we,
    input  wire [AW-1:0] waddr,
    input  wire [7:0]    wdata,
    input  wire [AW-1:0] raddr,
    output wire [7:0]    rdata
);
    reg [7:0] mem [0:DEPTH-1];
    reg [7:0] q;
    always @(posedge clk) begin
        if (we) mem[waddr] <= wdata;
        q <= mem[raddr];
    end
    assign rdata = q;
endmodule

`default_nettype wire
