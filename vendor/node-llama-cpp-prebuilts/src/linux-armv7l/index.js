export { getBinsDir } from 'node-llama-cpp-prebuilt-linux-armv7l-real';
