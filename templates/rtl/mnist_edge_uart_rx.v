// 8N1 UART receiver, CLKS_PER_BIT clock cycles per bit.
`default_nettype none

module mnist_edge_uart_rx #(
    parameter CLKS_PER_BIT = 104
) (
    input  wire       clk,
    input  wire       rst,
    input  wire       rx,
    output reg        valid,   // one cycle per received byte
    output reg  [7:0] data
);
    reg [1:0]  sync;           // two flip-flops against metastability
    reg [15:0] count;
    reg [3:0]  bit_i;
    reg        busy;
    always @(posedge clk) sync <= {sync[0], rx};
    wire line = sync[1];
    always @(posedge clk) begin
        valid <= 1'b0;
        if (rst) begin
            busy <= 1'b0;
        end else if (!busy) begin
            if (!line) begin   // start bit: sample every bit in its middle
                busy <= 1'b1;
                bit_i <= 4'd0;
                count <= CLKS_PER_BIT[15:0] + CLKS_PER_BIT[15:0] / 16'd2 - 16'd1;
            end
        end else if (count != 16'd0) begin
            count <= count - 16'd1;
        end else begin
            count <= CLKS_PER_BIT[15:0] - 16'd1;
            if (bit_i == 4'd8) begin  // stop bit
                busy <= 1'b0;
                valid <= line;
            end else begin
                data <= {line, data[7:1]};
                bit_i <= bit_i + 4'd1;
            end
        end
    end
endmodule

`default_nettype wire
