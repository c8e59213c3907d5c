// One activation buffer: single port (a layer only reads one buffer and only writes the
// other), registered read. On the iCE40 UP5K, `MNIST_EDGE_SPRAM` maps it onto one
// SB_SPRAM256KA (16K x 16 bits; each 16-bit word holds two activations), which frees the
// block RAM for the weights; elsewhere yosys infers block RAM.
`default_nettype none

module mnist_edge_act_ram #(
    parameter DEPTH = 1024,
    parameter AW = 16
) (
    input  wire          clk,
    input  wire          we,
    input  wire [AW-1:0] addr,
    input  wire [7:0]    wdata,
    output wire [7:0]    rdata
);
`ifdef MNIST_EDGE_SPRAM
    reg         odd;
    wire [14:0] a15 = addr;  // AW <= 15: a buffer fits one SPRAM (32 KB)
    wire        unused_addr = &{1'b0, a15[0]};
    wire [15:0] word;
    always @(posedge clk) odd <= addr[0];
    SB_SPRAM256KA spram (
        .ADDRESS(a15[14:1]), .DATAIN({wdata, wdata}),
        .MASKWREN(addr[0] ? 4'b1100 : 4'b0011), .WREN(we), .CHIPSELECT(1'b1),
        .CLOCK(clk), .STANDBY(1'b0), .SLEEP(1'b0), .POWEROFF(1'b1), .DATAOUT(word));
    assign rdata = odd ? word[15:8] : word[7:0];
`else
    reg [7:0] mem [0:DEPTH-1];
    reg [7:0] q;
    always @(posedge clk) begin
        if (we) mem[addr] <= wdata;
        q <= mem[addr];
    end
    assign rdata = q;
`endif
endmodule

`default_nettype wire
