// Buffer forms of llama.cpp's sequence-state API for node-llama-cpp 3.21's contexts
// (llama_state_seq_get_size / _get_data / _set_data), which node-llama-cpp binds only as files.
//
// A separate, small addon: it is compiled against node-llama-cpp's own addon headers (so that
// `AddonContext::ctx` is read at the offset the prebuilt addon uses) and linked to the prebuilt
// libllama, which the process has already loaded, so the `llama_context*` it reads is one of that
// library's. scripts/build-kv-native.ts builds it and keeps it only after a self-test in a child
// process; src/engine-servers/llama/kv-native.ts checks each context (`contextInfo`) before use.
//
// The caller (JS) holds node-llama-cpp's sequence and context locks around every call, as
// node-llama-cpp's own saveStateToFile / loadStateFromFile do.
#include <cstdint>
#include <cstring>
#include <string>

#include "napi.h"
#include "llama.h"
#include "AddonContext.h"

namespace {

AddonContext* unwrapContext(const Napi::Env& env, const Napi::Value& value) {
    if (!value.IsObject()) {
        throw Napi::TypeError::New(env, "expected node-llama-cpp's native context object (context._ctx)");
    }
    void* raw = nullptr;
    if (napi_unwrap(env, value, &raw) != napi_ok || raw == nullptr) {
        throw Napi::TypeError::New(env, "not a node-llama-cpp native context");
    }
    AddonContext* context = static_cast<AddonContext*>(raw);
    if (context->disposed || !context->contextLoaded || context->ctx == nullptr) {
        throw Napi::Error::New(env, "the context is disposed or not loaded");
    }
    return context;
}

llama_seq_id seqIdArg(const Napi::Env& env, const Napi::Value& value) {
    if (!value.IsNumber()) throw Napi::TypeError::New(env, "expected a sequence id");
    const int32_t id = value.As<Napi::Number>().Int32Value();
    if (id < 0) throw Napi::RangeError::New(env, "a sequence id is >= 0");
    return id;
}

// { nCtx, nSeqMax, modelMatches }: lets JS check the layout assumption before any state call.
Napi::Value ContextInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    AddonContext* context = unwrapContext(env, info[0]);
    Napi::Object out = Napi::Object::New(env);
    out.Set("nCtx", Napi::Number::New(env, llama_n_ctx(context->ctx)));
    out.Set("nSeqMax", Napi::Number::New(env, llama_n_seq_max(context->ctx)));
    const bool modelMatches = context->model != nullptr && context->model->model != nullptr &&
                              llama_get_model(context->ctx) == context->model->model;
    out.Set("modelMatches", Napi::Boolean::New(env, modelMatches));
    return out;
}

// The bytes llama_state_seq_get_data would write for the sequence (synchronous).
Napi::Value SeqStateSize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    AddonContext* context = unwrapContext(env, info[0]);
    const llama_seq_id seq = seqIdArg(env, info[1]);
    return Napi::Number::New(env, static_cast<double>(llama_state_seq_get_size(context->ctx, seq)));
}

// Runs llama_state_seq_get_data (read) or _set_data (write) on the thread pool, on a caller's buffer
// that the worker keeps referenced until it settles.
class SeqStateWorker : public Napi::AsyncWorker {
  public:
    SeqStateWorker(const Napi::Env& env, bool write, Napi::Object contextObject, AddonContext* context,
                   llama_seq_id seq, Napi::Uint8Array buffer, size_t length)
        : Napi::AsyncWorker(env, write ? "KvSeqStateWrite" : "KvSeqStateRead"),
          write_(write),
          context_(context),
          seq_(seq),
          data_(buffer.Data()),
          length_(length),
          deferred_(Napi::Promise::Deferred::New(env)) {
        contextRef_ = Napi::Persistent(contextObject);
        bufferRef_ = Napi::Persistent(static_cast<Napi::Object>(buffer));
    }

    Napi::Promise Promise() { return deferred_.Promise(); }

  protected:
    void Execute() override {
        try {
            if (context_->disposed || context_->ctx == nullptr) {
                SetError("the context was disposed");
                return;
            }
            if (write_) {
                done_ = llama_state_seq_set_data(context_->ctx, data_, length_, seq_);
                if (done_ == 0) SetError("llama_state_seq_set_data refused the state (wrong model, or too large for the context)");
            } else {
                const size_t size = llama_state_seq_get_size(context_->ctx, seq_);
                if (size > length_) {
                    SetError("the buffer is smaller than the sequence's state (" + std::to_string(size) + " bytes)");
                    return;
                }
                done_ = llama_state_seq_get_data(context_->ctx, data_, length_, seq_);
                if (done_ != size) SetError("llama_state_seq_get_data wrote " + std::to_string(done_) + " of " + std::to_string(size) + " bytes");
            }
        } catch (const std::exception& e) {
            SetError(e.what());
        } catch (...) {
            SetError("unknown error in llama_state_seq_get_data / _set_data");
        }
    }
    void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(done_))); }
    void OnError(const Napi::Error& err) override { deferred_.Reject(err.Value()); }

  private:
    bool write_;
    AddonContext* context_;
    llama_seq_id seq_;
    uint8_t* data_;
    size_t length_;
    size_t done_ = 0;
    Napi::ObjectReference contextRef_;
    Napi::ObjectReference bufferRef_;
    Napi::Promise::Deferred deferred_;
};

Napi::Value Run(const Napi::CallbackInfo& info, bool write) {
    Napi::Env env = info.Env();
    AddonContext* context = unwrapContext(env, info[0]);
    const llama_seq_id seq = seqIdArg(env, info[1]);
    if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        throw Napi::TypeError::New(env, "expected a Uint8Array (or Buffer)");
    }
    Napi::Uint8Array buffer = info[2].As<Napi::Uint8Array>();
    size_t length = buffer.ByteLength();
    if (info.Length() > 3 && info[3].IsNumber()) {
        const double wanted = info[3].As<Napi::Number>().DoubleValue();
        if (!(wanted >= 0) || wanted > static_cast<double>(length)) throw Napi::RangeError::New(env, "length is outside the buffer");
        length = static_cast<size_t>(wanted);
    }
    auto* worker = new SeqStateWorker(env, write, info[0].As<Napi::Object>(), context, seq, buffer, length);
    worker->Queue();
    return worker->Promise();
}

// seqStateRead(ctx, seqId, buffer): Promise<bytes written>, llama_state_seq_get_data into buffer.
Napi::Value SeqStateRead(const Napi::CallbackInfo& info) { return Run(info, false); }
// seqStateWrite(ctx, seqId, buffer, length?): Promise<bytes read>, llama_state_seq_set_data.
Napi::Value SeqStateWrite(const Napi::CallbackInfo& info) { return Run(info, true); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    exports.Set("contextInfo", Napi::Function::New(env, ContextInfo));
    exports.Set("seqStateSize", Napi::Function::New(env, SeqStateSize));
    exports.Set("seqStateRead", Napi::Function::New(env, SeqStateRead));
    exports.Set("seqStateWrite", Napi::Function::New(env, SeqStateWrite));
    // llama.cpp's sequence-state file header (llama.h) and the magic llama_state_seq_get_data puts
    // before the state (`io_magic` in src/llama-context.cpp, not in a header; the build's self-test
    // fails if it is wrong): JS lays a state out as the file would hold it (kv-native.ts).
    exports.Set("seqFileMagic", Napi::Number::New(env, LLAMA_STATE_SEQ_MAGIC));
    exports.Set("seqFileVersion", Napi::Number::New(env, LLAMA_STATE_SEQ_VERSION));
    exports.Set("bufferMagic", Napi::Number::New(env, 0xaf143cd8u));
    return exports;
}

}  // namespace

NODE_API_MODULE(kv_state, Init)
