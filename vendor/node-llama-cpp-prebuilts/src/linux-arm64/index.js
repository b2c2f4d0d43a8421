export { getBinsDir } from 'node-llama-cpp-prebuilt-linux-arm64-real';
