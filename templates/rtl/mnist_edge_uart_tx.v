// 8N1 UART transmitter, CLKS_PER_BIT clock cycles per bit.
`default_nettype none

module mnist_edge_uart_tx #(
    parameter CLKS_PER_BIT = 104
) (
    input  wire       clk,
    input  wire       rst,
    input  wire       valid,
    output wire       ready,
    input  wire [7:0] data,
    output wire       tx
);
    reg [9:0]  frame;   // stop, data, start: shifted out LSB first
    reg [15:0] count;
    reg [3:0]  left;
    assign ready = (left == 4'd0) && !rst;
    assign tx = (left == 4'd0) ? 1'b1 : frame[0];
    always @(posedge clk) begin
        if (rst) begin
            left <= 4'd0;
        end else if (left == 4'd0) begin
            if (valid) begin
                frame <= {1'b1, data, 1'b0};
                left <= 4'd10;
                count <= CLKS_PER_BIT[15:0] - 16'd1;
            end
        end else if (count != 16'd0) begin
            count <= count - 16'd1;
        end else begin
            count <= CLKS_PER_BIT[15:0] - 16'd1;
            frame <= {1'b1, frame[9:1]};
            left <= left - 4'd1;
        end
    end
endmodule

`default_nettype wire
