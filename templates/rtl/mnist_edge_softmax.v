// mnist-edge TFLM SOFTMAX (int8 -> int8, output scale 1/256, zero point -128), in place
// over the N logits at addresses 0..N-1 of an activation RAM, bit for bit as
// reference_ops::Softmax (mnist_edge/ops/tflite_kernels.py, softmax):
//   1. max over the row;
//   2. sum of term(x - max), term from a 256-entry table (exp of the scaled difference in
//      Q12.19, 0 below diff_min; tables from golden's own kernel, mem/softmax_*.mem);
//   3. GetReciprocal(sum, 12): a = (sum << clz(sum)) - 2^31, then gemmlowp's
//      one_over_one_plus_x_for_x_in_0_1 (3 Newton-Raphson steps: 7 saturating rounding
//      doubling high multiplies on one 32 x 32 multiplier, in sequence);
//   4. per value: RoundingDivideByPOT(SRDHM(scale, exp(x - max)), bits_over_unit + 23)
//      - 128, saturated to int8; -128 below diff_min; written back.
// Sequential, one value at a time: about 10 cycles per value plus 20 (N is a class count).
`default_nettype none

module mnist_edge_softmax #(
    parameter N = 10,
    parameter AW = 16,
    parameter signed [31:0] DIFF_MIN = -124
) (
    input  wire          clk,
    input  wire          rst,
    input  wire          start,   // one cycle; `busy` until the last value is written
    output reg           busy,
    output reg  [AW-1:0] addr,
    output reg           we,
    output reg  [7:0]    wdata,
    input  wire [7:0]    rdata    // the RAM's read port, one cycle after `addr`
);
    reg [31:0] exp_rom  [0:255];  // exp(d) in Q0.31, d = index - 255
    reg [31:0] term_rom [0:255];  // its Q12.19 term of the sum (0 below diff_min)
    initial begin
        $readmemh("mem/softmax_exp.mem", exp_rom);
        $readmemh("mem/softmax_term.mem", term_rom);
    end

    localparam S_IDLE = 4'd0, S_READ = 4'd1, S_WAIT = 4'd2, S_DATA = 4'd3, S_TERM = 4'd4,
               S_RECIP = 4'd5, S_MUL = 4'd6, S_MUL2 = 4'd7, S_STEP = 4'd8, S_OUT = 4'd9,
               S_WRITE = 4'd10, S_NORM = 4'd11, S_MUL3 = 4'd12, S_SAT = 4'd13;
    localparam P_MAX = 2'd0, P_SUM = 2'd1, P_OUT = 2'd2;
    localparam signed [31:0] INT32_MIN = 32'sh8000_0000, INT32_MAX = 32'sh7FFF_FFFF;

    reg [3:0]  state;
    reg [1:0]  pass;
    reg [AW-1:0] i;
    reg signed [7:0]  xmax;
    reg [31:0] sum;
    reg [7:0]  idx;       // x - max + 255
    reg        keep;
    reg [31:0] rom_q;     // the table word at idx
    reg [2:0]  op;        // reciprocal step 0..6
    reg        recip;     // the multiplier works for the reciprocal
    reg signed [31:0] hd, x, om, scale;
    reg [5:0]  expo;      // bits_over_unit + 23 (23..34)
    reg [39:0] below;     // mask of the bits below the guard bit, expo - 1, set with expo
    reg signed [39:0] rnd;  // the rounded quotient, registered before the offset and clamp

    // --- one saturating rounding doubling high multiply, three cycles: the product, the
    // rounding, then the result registered (mres_q) for what uses it
    reg  signed [31:0] ma, mb;
    reg  signed [63:0] mp;
    reg                movf;
    wire signed [63:0] mnum = mp + (mp[63] ? 64'sd1 - (64'sd1 <<< 30) : (64'sd1 <<< 30));
    wire signed [32:0] mfl  = mnum[63:31];
    wire signed [32:0] mq   = mfl + {32'd0, mnum[63] && (|mnum[30:0])};  // toward zero
    wire               unused_mq = &{1'b0, mq[32]};
    reg  signed [31:0] mres;
    always @(posedge clk) begin
        mp   <= ma * mb;
        movf <= (ma == INT32_MIN) && (mb == INT32_MIN);
        mres <= movf ? INT32_MAX : mq[31:0];
    end

    // SaturatingRoundingMultiplyByPOT<2> and <1> (rescale Q2.29 <- Q4.27; Q0.31 <- Q1.30)
    function automatic signed [31:0] sat_shl(input signed [31:0] v, input integer e);
        reg signed [31:0] thr;
        begin
            thr = (32'sd1 <<< (31 - e)) - 32'sd1;
            if (v > thr) sat_shl = INT32_MAX;
            else if (v < -thr) sat_shl = INT32_MIN;
            else sat_shl = v <<< e;
        end
    endfunction

    // count of leading zeros of sum (sum > 0: the max's own term is positive)
    reg [5:0] clz;
    integer b;
    always @(*) begin
        clz = 6'd32;
        for (b = 0; b < 32; b = b + 1) if (sum[b]) clz = 6'd31 - b[5:0];
    end
    wire [31:0] norm = sum << clz;   // bit 31 set; minus 2^31 is its low 31 bits
    wire        unused_norm = &{1'b0, norm[31], norm[0]};  // (a + 2^31) / 2 drops a's bit 0

    // RoundingDivideByPOT(v, expo) on 40 bits (expo up to 34): half away from zero; the
    // guard bit is the top bit of `below`'s complement's lowest one, i.e. bit expo - 1
    wire signed [39:0] v40   = {{8{mres[31]}}, mres};
    wire signed [39:0] fl40  = v40 >>> expo;
    wire               guard = |(v40 & (below + 40'd1));
    wire               stick = |(v40 & below);
    wire signed [39:0] r40   = rnd - 40'sd128;
    wire signed [9:0]  d     = $signed({2'b00, idx}) - 10'sd255;
    wire               keep_d = $signed({{22{d[9]}}, d}) >= DIFF_MIN;

    always @(posedge clk) begin
        we <= 1'b0;
        if (rst) begin
            state <= S_IDLE;
            busy  <= 1'b0;
        end else begin
            case (state)
                S_IDLE: if (start) begin
                    busy <= 1'b1; pass <= P_MAX; i <= {AW{1'b0}}; sum <= 32'd0;
                    recip <= 1'b0;
                    state <= S_READ;
                end
                S_READ: begin addr <= i; state <= S_WAIT; end
                S_WAIT: state <= S_DATA;           // the RAM registers mem[addr]
                S_DATA: begin                      // rdata = x_i
                    if (pass == P_MAX) begin
                        if (i == 0 || $signed(rdata) > xmax) xmax <= $signed(rdata);
                    end else begin
                        idx   <= rdata - xmax[7:0] + 8'd255;  // d + 255, 0..255
                    end
                    state <= (pass == P_MAX) ? S_STEP : S_TERM;
                end
                S_TERM: begin                      // the tables at idx
                    rom_q <= (pass == P_SUM) ? term_rom[idx] : exp_rom[idx];
                    keep  <= keep_d;
                    state <= (pass == P_SUM) ? S_STEP : S_OUT;
                end
                S_OUT: begin                       // SRDHM(scale, exp)
                    ma <= scale; mb <= rom_q;
                    state <= S_MUL;
                end
                S_MUL: state <= S_MUL2;
                S_MUL2: state <= S_MUL3;
                S_MUL3: begin                      // mres valid: the rounded quotient
                    if (!recip) begin
                        rnd   <= fl40 + {39'd0, guard && (!v40[39] || stick)};
                        state <= S_SAT;
                    end else begin
                        // reciprocal steps: 0: x = 48/17 - 32/17 hd; odd: om = 1 - hd x;
                        // even: x = x + rescale(x om)
                        if (op == 3'd0) x <= 32'sd1515870810 + mres;
                        else if (op[0]) om <= (32'sd1 <<< 29) - mres;
                        else x <= x + sat_shl(mres, 2);
                        state <= S_RECIP;
                        op <= op + 3'd1;
                    end
                end
                S_SAT: begin                       // - 128, saturated; -128 below diff_min
                    wdata <= !keep ? 8'h80 : (r40 > 40'sd127) ? 8'h7F :
                             (r40 < -40'sd128) ? 8'h80 : r40[7:0];
                    we    <= 1'b1;
                    state <= S_WRITE;
                end
                S_WRITE: state <= S_STEP;
                S_STEP: begin                      // next value, or the next pass
                    if (pass == P_SUM) sum <= sum + rom_q;
                    if (i != N - 1) begin
                        i <= i + 1'b1;
                        state <= S_READ;
                    end else if (pass == P_MAX) begin
                        pass <= P_SUM; i <= {AW{1'b0}}; state <= S_READ;
                    end else if (pass == P_SUM) begin
                        pass <= P_OUT; i <= {AW{1'b0}}; op <= 3'd0;
                        state <= S_NORM;
                    end else begin
                        busy <= 1'b0;
                        state <= S_IDLE;
                    end
                end
                S_NORM: begin                      // the sum is complete
                    hd <= $signed({2'b01, norm[30:1]});  // (a + 2^31) / 2, a = norm - 2^31
                    recip <= 1'b1;
                    state <= S_RECIP;
                end
                S_RECIP: begin                     // operands of reciprocal step `op`
                    if (op == 3'd7) begin
                        scale <= sat_shl(x, 1);
                        recip <= 1'b0;
                        expo  <= 6'd35 - clz;       // 12 - clz + 23
                        below <= ~({40{1'b1}} << (6'd34 - clz));  // bits below expo - 1
                        state <= S_READ;
                    end else begin
                        ma <= hd;
                        mb <= (op == 3'd0) ? -32'sd1010580540 : x;
                        if (op != 3'd0 && !op[0]) begin ma <= x; mb <= om; end
                        state <= S_MUL;
                    end
                end
                default: state <= S_IDLE;
            endcase
        end
    end
endmodule

`default_nettype wire
